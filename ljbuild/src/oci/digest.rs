//! sha256 digests of streams, as OCI writes them (`sha256:HEX`).

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use super::OciError;

/// Lower-case hex of a sha256 result.
fn hex(bytes: &[u8]) -> String {
    crate::resolve::hex(bytes)
}

/// Checks that `digest` is `sha256:` followed by 64 lower-case hex digits, and returns the hex.
pub fn sha256_hex(digest: &str) -> Result<&str, OciError> {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => {
            Ok(h)
        }
        _ => Err(OciError::Malformed(format!(
            "unsupported or malformed digest '{digest}' (expected sha256:HEX)"
        ))),
    }
}

/// A reader that hashes and counts what passes through it.
#[derive(Debug)]
pub struct HashReader<R> {
    inner: R,
    hash: Sha256,
    len: u64,
}

impl<R: Read> HashReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashReader { inner, hash: Sha256::new(), len: 0 }
    }

    /// Reads what is left (so the digest covers the whole stream) and returns the inner reader,
    /// the digest (`sha256:HEX`) and the length.
    pub fn finish(mut self) -> io::Result<(R, String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.inner, format!("sha256:{}", hex(&self.hash.finalize())), self.len))
    }

    /// The inner reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
#[derive(Debug)]
pub struct HashWriter<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> HashWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashWriter { inner, hash: Sha256::new(), len: 0 }
    }

    /// The inner writer, the digest (`sha256:HEX`) and the length.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, format!("sha256:{}", hex(&self.hash.finalize())), self.len)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The digest of a byte string.
pub fn of_bytes(b: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert_eq!(of_bytes(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let mut r = HashReader::new(&b"abc"[..]);
        let mut one = [0u8; 1];
        r.read_exact(&mut one).unwrap();
        let (_, d, n) = r.finish().unwrap();
        assert_eq!((d, n), (of_bytes(b"abc"), 3));
        assert!(sha256_hex("sha256:ABC").is_err());
        assert!(sha256_hex(&of_bytes(b"x")).is_ok());
    }
}
