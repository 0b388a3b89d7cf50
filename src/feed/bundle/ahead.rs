//! Read-ahead: decompress on one thread while the importer hashes and writes on another.
//!
//! The peers an import is measured against (`zstd -dc | sha256sum`) are two processes on
//! two cores; a single-threaded importer would decompress, hash and write in series. The
//! background thread stays at most [`DEPTH`] chunks ahead, so memory is bounded and a
//! decompression bomb still meets the consumer-side cap after a few MiB.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, sync_channel};

/// Chunk size handed across threads.
const CHUNK: usize = 1 << 20;
/// Chunks decompressed ahead of the consumer.
const DEPTH: usize = 4;

/// A reader whose source is read by a background thread.
pub struct ReadAhead {
    rx: Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ReadAhead {
    /// Starts reading `src` on a new thread.
    pub fn spawn<R: Read + Send + 'static>(mut src: R) -> Self {
        let (tx, rx) = sync_channel(DEPTH);
        std::thread::Builder::new()
            .name("bundle-read-ahead".into())
            .spawn(move || {
                loop {
                    let mut buf = vec![0u8; CHUNK];
                    let mut filled = 0;
                    // Fill whole chunks: fewer hand-overs between threads.
                    let res = loop {
                        match src.read(&mut buf[filled..]) {
                            Ok(0) => break Ok(()),
                            Ok(n) => {
                                filled += n;
                                if filled == CHUNK {
                                    break Ok(());
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => break Err(e),
                        }
                    };
                    buf.truncate(filled);
                    let last = filled < CHUNK;
                    if filled > 0 && tx.send(Ok(buf)).is_err() {
                        return; // the consumer is gone
                    }
                    if let Err(e) = res {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    if last {
                        return; // end of stream: dropping tx signals it
                    }
                }
            })
            .expect("spawn read-ahead thread");
        Self {
            rx,
            cur: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_every_byte_in_order_and_forwards_errors() {
        let data: Vec<u8> = (0..(3 * CHUNK + 12345)).map(|i| (i % 251) as u8).collect();
        let mut r = ReadAhead::spawn(io::Cursor::new(data.clone()));
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);

        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut"));
                }
                let n = buf.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
        }
        let mut r = ReadAhead::spawn(Failing(10));
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(out.len(), 10);
    }
}
