//! Client JSON with a nesting limit: anything nested deeper than the limit is refused
//! before serde sees it (serde_json's own limit of 128 only guards the stack). The limit
//! is a parameter of every parse ([`JsonDepth`], from `limits.json_max_depth`), held by
//! the core that parses.

use serde::Deserialize;

/// The default nesting limit: ACME and JOSE objects need 4 or 5 levels.
pub const DEFAULT_MAX_DEPTH: usize = 32;

/// How deeply client JSON may nest (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonDepth(usize);

impl JsonDepth {
    pub fn new(levels: usize) -> Self {
        Self(levels.max(1))
    }

    pub fn levels(self) -> usize {
        self.0
    }
}

impl Default for JsonDepth {
    fn default() -> Self {
        Self(DEFAULT_MAX_DEPTH)
    }
}

/// True if no array or object in `bytes` is nested deeper than `max` (brackets inside
/// strings do not count). Does not check that `bytes` is JSON.
pub fn depth_within(bytes: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Parses `bytes` as `T` within the nesting limit; the error is a short message (no
/// line and column).
pub fn from_slice<'a, T: Deserialize<'a>>(bytes: &'a [u8], depth: JsonDepth) -> Result<T, String> {
    let max = depth.levels();
    if !depth_within(bytes, max) {
        return Err(format!("JSON nested deeper than {max} levels"));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let msg = e.to_string();
        msg.split(" at line").next().unwrap_or(&msg).to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nesting_outside_strings_only() {
        assert!(depth_within(br#"{"a":[{"b":1}]}"#, 3));
        assert!(!depth_within(br#"{"a":[{"b":1}]}"#, 2));
        assert!(depth_within(br#"{"a":"[[[[\"[[[["}"#, 1), "brackets in strings do not count");
        let deep = "[".repeat(40) + &"]".repeat(40);
        assert!(!depth_within(deep.as_bytes(), DEFAULT_MAX_DEPTH));
        assert!(depth_within(deep.as_bytes(), 40));
    }

    #[test]
    fn from_slice_refuses_deep_json_with_a_clear_message() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40));
        let err = from_slice::<serde_json::Value>(deep.as_bytes(), JsonDepth::default()).unwrap_err();
        assert!(err.contains("nested deeper than"), "{err}");
        let v: serde_json::Value = from_slice(br#"{"a":[1]}"#, JsonDepth::default()).unwrap();
        assert!(from_slice::<serde_json::Value>(br#"{"a":[1]}"#, JsonDepth::new(1)).is_err());
        assert_eq!(v["a"][0], 1);
    }
}
