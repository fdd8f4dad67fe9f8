//! The DER primitives idca's hand-written encoders need (X.690 §8.1): name constraints
//! with URI subtrees (rcgen has none), PKCS#12 files, and the P-521 certificates rcgen on
//! ring cannot write.

/// A DER tag-length-value, definite length (short form below 128 bytes).
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The DER tag-length-value at the start of `der`: (the whole of it, its content);
/// `None` if it is cut short.
pub(crate) fn read_tlv(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let first = *der.get(1)?;
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        (2 + n, der.get(2..2 + n)?.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)))
    };
    let end = header.checked_add(len)?;
    Some((der.get(..end)?, der.get(header..end)?))
}
