//! The argon2 PHC hashes idca checks passwords and client secrets against: which costs
//! it accepts. Apart from the OAuth core so that config loading can refuse a hash too.

use argon2::password_hash::PasswordHash;

/// The largest argon2 costs a hash may name (memory in KiB, passes, lanes). A hash's
/// costs come from the hash itself and a check runs for anyone who posts a login, so a
/// configured hash naming 4 TiB or 2^32 passes would abort the process or hold one of
/// the two check slots for good. 256 MiB is thirteen times the default (m=19456, t=2,
/// p=1).
pub const MAX_ARGON2: (u32, u32, u32) = (262_144, 16, 8);

/// A PHC hash a login can be checked against, read: argon2, parameters that parse,
/// costs within [`MAX_ARGON2`]. Config loading refuses any other hash, and a check
/// fails closed on one.
pub fn parse_checkable(hash: &str) -> Result<(PasswordHash<'_>, argon2::Algorithm, argon2::Params), String> {
    let h = PasswordHash::new(hash).map_err(|e| format!("not a PHC hash string: {e}"))?;
    let algorithm = argon2::Algorithm::try_from(h.algorithm).map_err(|_| format!("`{}` is not argon2", h.algorithm))?;
    let params = argon2::Params::try_from(&h).map_err(|e| format!("argon2 parameters: {e}"))?;
    let (m, t, p) = MAX_ARGON2;
    if params.m_cost() > m || params.t_cost() > t || params.p_cost() > p {
        return Err(format!("argon2 costs above m={m}, t={t}, p={p}"));
    }
    Ok((h, algorithm, params))
}

/// Whether a PHC hash is one a login can be checked against ([`parse_checkable`]).
pub fn check_password_hash(hash: &str) -> Result<(), String> {
    parse_checkable(hash).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_above_the_bounds_are_refused() {
        let salt = "c2FsdHNhbHRzYWx0";
        let hash = "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE";
        let phc = |m: u32, t: u32, p: u32| format!("$argon2id$v=19$m={m},t={t},p={p}${salt}${hash}");
        assert_eq!(check_password_hash(&phc(19_456, 2, 1)), Ok(()));
        assert_eq!(check_password_hash(&phc(262_144, 16, 8)), Ok(()));
        for (m, t, p) in [(4_294_967_295, 1, 1), (262_145, 1, 1), (19_456, 4_294_967_295, 1), (19_456, 2, 9)] {
            assert!(check_password_hash(&phc(m, t, p)).is_err(), "m={m} t={t} p={p}");
        }
        assert!(check_password_hash("$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA").is_err());
        assert!(check_password_hash("plain text").is_err());
    }
}
