//! A little-endian reader over the file's bytes that never reads past the end: every
//! read checks the length first and fails with where it stopped, so a truncated or
//! hostile file gives a message, not a panic or a huge allocation.

/// What went wrong, without the context (key, tensor, file) that the caller adds.
pub(crate) type Parse<T> = std::result::Result<T, String>;

pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    pub fn position(&self) -> u64 {
        self.pos as u64
    }

    pub fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    pub fn take(&mut self, n: u64) -> Parse<&'a [u8]> {
        if n > self.remaining() {
            return Err(format!(
                "truncated: {n} bytes needed at offset {}, the file has {} bytes",
                self.pos,
                self.bytes.len()
            ));
        }
        // n <= remaining, so it fits in usize.
        let (start, end) = (self.pos, self.pos + n as usize);
        self.pos = end;
        Ok(&self.bytes[start..end])
    }

    fn array<const N: usize>(&mut self) -> Parse<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N as u64)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Parse<u8> {
        Ok(u8::from_le_bytes(self.array()?))
    }
    pub fn i8(&mut self) -> Parse<i8> {
        Ok(i8::from_le_bytes(self.array()?))
    }
    pub fn u16(&mut self) -> Parse<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn i16(&mut self) -> Parse<i16> {
        Ok(i16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Parse<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> Parse<i32> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Parse<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Parse<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn f32(&mut self) -> Parse<f32> {
        Ok(f32::from_le_bytes(self.array()?))
    }
    pub fn f64(&mut self) -> Parse<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// A GGUF string: u64 length, then that many bytes of UTF-8.
    pub fn string(&mut self) -> Parse<String> {
        let len = self.u64()?;
        if len > self.remaining() {
            return Err(format!(
                "string length {len} at offset {} is past the end of the file ({} bytes left)",
                self.pos - 8,
                self.remaining()
            ));
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| {
            format!(
                "string at offset {} is not UTF-8 ({e}): {}",
                self.pos - bytes.len(),
                String::from_utf8_lossy(bytes)
            )
        })
    }

    /// A count of `min_size`-byte items, checked against the bytes left so that a corrupt
    /// count fails here instead of in an allocation.
    pub fn count(&mut self, what: &str, min_size: u64) -> Parse<usize> {
        let n = self.u64()?;
        let fits = n
            .checked_mul(min_size)
            .is_some_and(|bytes| bytes <= self.remaining());
        if !fits {
            return Err(format!(
                "{what} {n} cannot fit in the {} bytes left in the file",
                self.remaining()
            ));
        }
        // n * min_size <= remaining < usize::MAX, with min_size >= 1.
        Ok(n as usize)
    }
}
