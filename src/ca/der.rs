//! The one DER primitive idca's hand-written encoders need (X.690 §8.1): name
//! constraints with URI subtrees (rcgen has none) and PKCS#12 files.

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
