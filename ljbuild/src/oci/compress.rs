//! Layer compression for export: gzip in parallel blocks (as pigz and Go's pgzip, which `umoci
//! repack` uses, do), and zstd (multithreaded).
//!
//! The gzip stream is a sequence of gzip members, one per 1 MiB block of the tar, each
//! compressed on its own thread: a valid gzip file (RFC 1952 allows several members, and every
//! reader of images, Go's `compress/gzip` included, reads them all), the same bytes for the same
//! input, and at most a few blocks in memory.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::thread::JoinHandle;

/// How layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Compression {
    /// Uncompressed tar (the fastest to write and read).
    #[default]
    None,
    /// gzip (what every registry and runtime reads).
    Gzip,
    /// zstd (smaller and faster than gzip; podman, skopeo, containerd read it).
    Zstd,
}

/// The size of one gzip member's input.
const BLOCK: usize = 1 << 20;

/// The compressor threads to use.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
}

/// A writer that gzips what it is given in parallel blocks into `out`.
pub struct ParGz<W: Write> {
    out: W,
    buf: Vec<u8>,
    pending: VecDeque<JoinHandle<io::Result<Vec<u8>>>>,
    limit: usize,
    blocks: u64,
}

impl<W: Write> std::fmt::Debug for ParGz<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParGz").field("blocks", &self.blocks).finish()
    }
}

/// Whether `data` looks incompressible: the byte entropy of a sample is above 7.9 bits (random
/// or already compressed data). Such a block is stored (deflate level 0) rather than compressed
/// for nothing, as Go's `klauspost/compress` (under `umoci repack`) also skips such data.
fn incompressible(data: &[u8]) -> bool {
    let mut hist = [0u32; 256];
    let mut n = 0u32;
    // The first 256 bytes of every KiB: a quarter of the block, cheap next to deflate.
    for chunk in data.chunks(1024) {
        let head = &chunk[..chunk.len().min(256)];
        for &b in head {
            hist[b as usize] += 1;
        }
        n += head.len() as u32;
    }
    if n < 4096 {
        return false;
    }
    let total = f64::from(n);
    let entropy: f64 = hist
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / total;
            -p * p.log2()
        })
        .sum();
    entropy > 7.9
}

fn gzip_block(data: Vec<u8>) -> io::Result<Vec<u8>> {
    let level = if incompressible(&data) { flate2::Compression::none() } else { flate2::Compression::fast() };
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2 + 64), level);
    enc.write_all(&data)?;
    enc.finish()
}

impl<W: Write> ParGz<W> {
    /// A compressor writing into `out`.
    pub fn new(out: W) -> Self {
        let limit = threads();
        ParGz { out, buf: Vec::with_capacity(BLOCK), pending: VecDeque::new(), limit, blocks: 0 }
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(h) = self.pending.pop_front() {
            let data = h.join().map_err(|_| io::Error::other("a gzip thread panicked"))??;
            self.out.write_all(&data)?;
        }
        Ok(())
    }

    fn send(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        self.blocks += 1;
        if self.limit <= 1 {
            let z = gzip_block(data)?;
            return self.out.write_all(&z);
        }
        while self.pending.len() >= self.limit {
            self.write_oldest()?;
        }
        self.pending.push_back(std::thread::spawn(move || gzip_block(data)));
        Ok(())
    }

    /// Compresses what is left, writes every block in order, and returns `out`.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() || self.blocks == 0 {
            self.send()?;
        }
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParGz<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BLOCK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BLOCK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A zstd encoder into `out` (level 3, one worker per core).
pub fn zstd<W: Write>(out: W) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut enc = zstd::stream::write::Encoder::new(out, 3)?;
    let n = threads();
    if n > 1 {
        enc.multithread(n as u32)?;
    }
    Ok(enc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn gzip_blocks_read_back() {
        let data: Vec<u8> = (0..(3 * BLOCK + 12345)).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = ParGz::new(Vec::new());
        for chunk in data.chunks(70_000) {
            w.write_all(chunk).unwrap();
        }
        let z = w.finish().unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&z[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        // The same input gives the same bytes.
        let mut w = ParGz::new(Vec::new());
        w.write_all(&data).unwrap();
        assert_eq!(w.finish().unwrap(), z);
        // Nothing written is still a valid (empty) gzip stream.
        let z = ParGz::new(Vec::new()).finish().unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&z[..]).read_to_end(&mut back).unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn random_blocks_are_stored() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let random: Vec<u8> = (0..BLOCK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        assert!(incompressible(&random));
        let text: Vec<u8> =
            b"the quick brown fox jumps over the lazy dog\n".iter().cycle().take(BLOCK).copied().collect();
        assert!(!incompressible(&text));
        let z = gzip_block(random.clone()).unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&z[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, random);
        assert!(gzip_block(text).unwrap().len() < BLOCK / 10);
    }

    #[test]
    fn zstd_reads_back() {
        let data: Vec<u8> = (0..(2 * BLOCK)).map(|i| (i % 13) as u8).collect();
        let mut e = zstd(Vec::new()).unwrap();
        e.write_all(&data).unwrap();
        let z = e.finish().unwrap();
        assert_eq!(zstd::stream::decode_all(&z[..]).unwrap(), data);
    }
}
