//! Finalization (RFC 8555 §7.4): check the CSR against the order, issue, store both;
//! and the certificate download (§7.4.2) with its alternate chains.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::wire::OrderStatus;
use super::{Acme, AcmeError, KeyRule, Reply, SignedRequest, found, order_status, owned_by, wire};

#[cfg(test)]
use crate::ca::KeyType;
use crate::ca::{CsrInfo, LeafRequest, Usage, parse_csr};
use crate::clock::UnixTime;
use crate::jose::{Jwk, b64_decode};
use crate::model::{IdentifierKind, IssuedCertificate, Order, OrderId, OrderPhase, Serial};
use crate::store::StoreError;

/// Checks a CSR against an order (§7.4):
/// 1. the CSR key is not the account key (§11.1);
/// 2. for an identity order: no DNS or IP names, URIs exactly the device's client id
///    (`!` or `%21`) and the handle, and (as step-ca checks) the subject's organization
///    the identity's domain (case-insensitive) and its `displayName` the user's name;
/// 3. otherwise: no URIs, and DNS names and IP addresses exactly the order's identifiers;
/// 4. a subject common name, if any, is one of them.
pub(super) fn check_csr_against_order(csr: &CsrInfo, order: &Order, account_key: &Jwk) -> Result<(), AcmeError> {
    // 1.
    if super::revoke::same_key(account_key, &csr.spki_der) {
        return Err(AcmeError::BadCsr("the CSR key must not be the account key".into()));
    }
    // 2.
    if let Some((device, _)) = super::identity::check_identity_order(&order.identifiers)? {
        let want: BTreeSet<String> = [device.client_id.clone().unwrap_or_default(), device.handle.clone()]
            .iter()
            .map(|u| super::identity::normalise_uri(u))
            .collect();
        let got: BTreeSet<String> = csr.uris.iter().map(|u| super::identity::normalise_uri(u)).collect();
        if !csr.dns_names.is_empty() || !csr.ip_addresses.is_empty() || got != want {
            return Err(AcmeError::BadCsr(
                "an identity CSR names exactly the device's client id and the user's handle, as URIs".into(),
            ));
        }
        if !matches!(csr.organizations.as_slice(), [o] if o.eq_ignore_ascii_case(&device.domain)) {
            return Err(AcmeError::BadCsr(format!(
                "an identity CSR's subject has one organization (O), the domain `{}`; found {:?}",
                device.domain, csr.organizations
            )));
        }
        if !matches!(csr.display_names.as_slice(), [n] if *n == device.name) {
            return Err(AcmeError::BadCsr(format!(
                "an identity CSR's subject has one displayName (2.16.840.1.113730.3.1.241), the user's name `{}`; \
                 found {:?}",
                device.name, csr.display_names
            )));
        }
        return Ok(());
    }
    // 3.
    if !csr.uris.is_empty() {
        return Err(AcmeError::BadCsr("URI names are only for identity orders".into()));
    }
    let wanted_dns: BTreeSet<&str> =
        order.identifiers.iter().filter(|i| i.kind == IdentifierKind::Dns).map(|i| i.value.as_str()).collect();
    let wanted_ip: BTreeSet<IpAddr> = order
        .identifiers
        .iter()
        .filter(|i| i.kind == IdentifierKind::Ip)
        .filter_map(|i| i.value.parse().ok())
        .collect();
    let got_dns: BTreeSet<&str> = csr.dns_names.iter().map(String::as_str).collect();
    let got_ip: BTreeSet<IpAddr> = csr.ip_addresses.iter().copied().collect();
    if got_dns != wanted_dns || got_ip != wanted_ip {
        let extra: Vec<String> = got_dns
            .difference(&wanted_dns)
            .map(|s| s.to_string())
            .chain(got_ip.difference(&wanted_ip).map(|i| i.to_string()))
            .collect();
        let missing: Vec<String> = wanted_dns
            .difference(&got_dns)
            .map(|s| s.to_string())
            .chain(wanted_ip.difference(&got_ip).map(|i| i.to_string()))
            .collect();
        return Err(AcmeError::BadCsr(format!(
            "the CSR names must be exactly the order's identifiers (not in the order: {extra:?}; missing: {missing:?})"
        )));
    }
    // 4.
    if let Some(cn) = &csr.common_name {
        let in_order = wanted_dns.contains(cn.as_str()) || cn.parse::<IpAddr>().is_ok_and(|ip| wanted_ip.contains(&ip));
        if !in_order {
            return Err(AcmeError::BadCsr(format!("the CSR common name `{cn}` is not one of the order's identifiers")));
        }
    }
    Ok(())
}

impl Acme {
    /// finalize (§7.4): on a `ready` order with an acceptable CSR, issues the certificate
    /// and stores it with the now-`valid` order in one durable transaction.
    pub async fn finalize(
        &self,
        req: SignedRequest,
        id: &OrderId,
        now: UnixTime,
    ) -> Result<Reply<wire::Order>, AcmeError> {
        let v = self.verify(&req, KeyRule::Kid).await?;
        let account = v.account()?.value.clone();
        let stored = found(self.store.order(id).await, "order")?;
        owned_by(&stored.value.account, &v, "order")?;
        let mut order = stored.value;
        let authzs = self.order_authzs(&order).await?;
        let status = order_status(&order, &authzs, now);
        if status != OrderStatus::Ready {
            return Err(AcmeError::OrderNotReady(format!("the order is {status:?}, not ready").to_lowercase()));
        }
        let p: wire::FinalizePayload = v.json()?;
        let der = b64_decode(&p.csr).map_err(|_| AcmeError::BadCsr("`csr` is not base64url".into()))?;
        let csr = parse_csr(&der)?;
        check_csr_against_order(&csr, &order, &account.key)?;
        let dns: Vec<String> =
            order.identifiers.iter().filter(|i| i.kind == IdentifierKind::Dns).map(|i| i.value.clone()).collect();
        let ips: Vec<IpAddr> = order
            .identifiers
            .iter()
            .filter(|i| i.kind == IdentifierKind::Ip)
            .filter_map(|i| i.value.parse().ok())
            .collect();
        let not_before = order.not_before.unwrap_or(now - 60);
        let profile = order.profile.as_deref().unwrap_or(&self.config.default_profile);
        let validity = self.profile_validity(profile);
        let not_after = order.not_after.unwrap_or(not_before.saturating_add(validity));
        // A client identity certificate (Wire's profile): Subject O={domain},
        // CN={display name}; SAN URIs for the device (its `!` percent-encoded) and the
        // handle; clientAuth.
        let identity = super::identity::check_identity_order(&order.identifiers)?;
        let uris: Vec<String> = identity
            .as_ref()
            .map(|(d, _)| vec![d.client_id.clone().unwrap_or_default().replace('!', "%21"), d.handle.clone()])
            .unwrap_or_default();
        let leaf = self.ca.issue(&LeafRequest {
            spki_der: &csr.spki_der,
            key_type: csr.key_type,
            dns_names: &dns,
            ip_addresses: &ips,
            uris: &uris,
            emails: &[],
            subject: identity.as_ref().map(|(d, _)| (d.domain.as_str(), d.name.as_str())),
            not_before,
            not_after,
            usage: if identity.is_some() { Usage::ClientIdentity } else { Usage::TlsServer },
        })?;
        let cert = IssuedCertificate::new(
            leaf.serial.clone(),
            leaf.chain_pem,
            (not_before, not_after),
            now,
            Some((account.id.clone(), order.id.clone())),
        );
        order.phase = OrderPhase::Valid { certificate: leaf.serial };
        match self.store.finalize_order(&order, stored.version, &cert).await {
            Ok(()) => self.metrics.issuance(),
            Err(StoreError::Conflict) => {
                return Err(AcmeError::OrderNotReady("the order was finalized concurrently".into()));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Reply::ok(self.order_json(&order, &authzs, now)).at(self.links.order(&order.id)))
    }
}

impl Acme {
    /// The certificate chain (§7.4.2), PEM, fetched with POST-as-GET by its account:
    /// chain `alternate` (0: the default, as stored at issuance), with a
    /// `Link: rel="alternate"` to each other chain (Pebble's `/alternate/N` URLs).
    pub async fn certificate(
        &self,
        req: SignedRequest,
        serial: &Serial,
        alternate: usize,
    ) -> Result<Reply<String>, AcmeError> {
        let v = self.verify(&req, KeyRule::Kid).await?;
        v.require_post_as_get()?;
        let cert = self.issued(serial).await?.value;
        match &cert.account {
            Some(owner) => owned_by(owner, &v, "certificate")?,
            None => return Err(AcmeError::Unauthorized("this certificate was not issued through ACME".into())),
        }
        // Alternates exist for the current CA's leaves only (not a rotated-out one's).
        let leaf = cert.leaf_der().unwrap_or_default();
        let chains = self.ca.chains_for(&leaf);
        let body = match alternate {
            0 => cert.chain_pem,
            n => self
                .ca
                .chain_pem(&leaf, n)
                .filter(|_| n < chains)
                .ok_or_else(|| AcmeError::NotFound(format!("certificate {serial} has no alternate chain {n}")))?,
        };
        let mut reply = Reply::ok(body);
        for n in (0..chains).filter(|n| *n != alternate) {
            reply = reply.link(self.links.certificate_chain(serial, n), "alternate");
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AccountId, Identifier, OrderPhase};

    fn order(ids: &[(IdentifierKind, &str)]) -> Order {
        Order {
            id: OrderId::random(),
            account: AccountId("a".into()),
            identifiers: ids.iter().map(|(k, v)| Identifier { kind: *k, value: v.to_string() }).collect(),
            authorizations: vec![],
            expires: 0,
            not_before: None,
            not_after: None,
            phase: OrderPhase::Open,
            created: 0,
            replaces: None,
            replaces_cert_id: None,
            profile: None,
        }
    }

    fn csr(dns: &[&str], ips: &[&str], cn: Option<&str>) -> CsrInfo {
        let key = rcgen::KeyPair::generate().unwrap();
        CsrInfo {
            spki_der: rcgen::PublicKeyData::subject_public_key_info(&key),
            key_type: KeyType::P256,
            common_name: cn.map(str::to_owned),
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            ip_addresses: ips.iter().map(|s| s.parse().unwrap()).collect(),
            uris: vec![],
            organizations: vec![],
            display_names: vec![],
        }
    }

    fn some_key() -> Jwk {
        Jwk::from_value(&serde_json::json!({"kty":"OKP","crv":"Ed25519","x": crate::jose::b64_encode([9u8; 32])}))
            .unwrap()
    }

    #[test]
    fn accepts_exactly_the_orders_names() {
        let o = order(&[(IdentifierKind::Dns, "a.example"), (IdentifierKind::Ip, "127.0.0.1")]);
        check_csr_against_order(&csr(&["a.example"], &["127.0.0.1"], Some("a.example")), &o, &some_key()).unwrap();
        check_csr_against_order(&csr(&["a.example"], &["127.0.0.1"], None), &o, &some_key()).unwrap();
    }

    #[test]
    fn rejects_extra_missing_or_foreign_names() {
        let o = order(&[(IdentifierKind::Dns, "a.example")]);
        for c in [
            csr(&["a.example", "b.example"], &[], None),
            csr(&[], &[], None),
            csr(&["a.example"], &["10.0.0.1"], None),
            csr(&["a.example"], &[], Some("b.example")),
        ] {
            assert!(matches!(check_csr_against_order(&c, &o, &some_key()), Err(AcmeError::BadCsr(_))), "{c:?}");
        }
    }

    #[test]
    fn rejects_the_account_key() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let jwk = Jwk::from_value(&serde_json::json!({"kty":"OKP","crv":"Ed25519",
            "x": crate::jose::b64_encode(key.public_key_raw())}))
        .unwrap();
        let c = CsrInfo {
            spki_der: rcgen::PublicKeyData::subject_public_key_info(&key),
            key_type: KeyType::Ed25519,
            common_name: None,
            dns_names: vec!["a.example".into()],
            ip_addresses: vec![],
            uris: vec![],
            organizations: vec![],
            display_names: vec![],
        };
        let o = order(&[(IdentifierKind::Dns, "a.example")]);
        assert!(
            matches!(check_csr_against_order(&c, &o, &jwk), Err(AcmeError::BadCsr(m)) if m.contains("account key"))
        );
    }

    /// An identity CSR, as step-ca checks it: the URIs, one organization (the domain,
    /// any case) and one displayName (the user's name).
    #[test]
    fn identity_csrs_carry_the_domain_and_the_display_name() {
        let client = "wireapp://K9gGyX8OAK8aH8Myj6djqQ!9ff0457928ebe5f4@wire.test";
        let handle = "wireapp://%40alice_wire@wire.test";
        let user = serde_json::json!({"handle": handle, "name": "Alice Smith", "domain": "wire.test"});
        let mut device = user.clone();
        device["client-id"] = serde_json::json!(client);
        let mut o = order(&[]);
        o.identifiers = vec![
            Identifier { kind: IdentifierKind::WireappDevice, value: device.to_string() },
            Identifier { kind: IdentifierKind::WireappUser, value: user.to_string() },
        ];
        let identity_csr = |orgs: &[&str], names: &[&str]| CsrInfo {
            uris: vec![client.into(), handle.into()],
            organizations: orgs.iter().map(|s| s.to_string()).collect(),
            display_names: names.iter().map(|s| s.to_string()).collect(),
            ..csr(&[], &[], None)
        };
        check_csr_against_order(&identity_csr(&["wire.test"], &["Alice Smith"]), &o, &some_key()).unwrap();
        check_csr_against_order(&identity_csr(&["WIRE.test"], &["Alice Smith"]), &o, &some_key()).unwrap();
        for (orgs, names, why) in [
            (&[][..], &["Alice Smith"][..], "O"),
            (&["other.test"][..], &["Alice Smith"][..], "O"),
            (&["wire.test", "wire.test"][..], &["Alice Smith"][..], "O"),
            (&["wire.test"][..], &[][..], "displayName"),
            (&["wire.test"][..], &["Alice"][..], "displayName"),
        ] {
            let r = check_csr_against_order(&identity_csr(orgs, names), &o, &some_key());
            assert!(matches!(&r, Err(AcmeError::BadCsr(m)) if m.contains(why)), "{orgs:?} {names:?}: {r:?}");
        }
    }
}
