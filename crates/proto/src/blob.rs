//! Attachment blobs: how a file is encrypted, padded and checked, with no I/O.
//!
//! A file is sealed with a fresh random 256-bit key (one key, one file,
//! never reused) as a STREAM (Hoang–Reyhanitabar–Rogaway–Vizár, the
//! `StreamBE32` construction of RustCrypto's `aead::stream`) over
//! ChaCha20-Poly1305:
//!
//! ```text
//! blob    = header || seal(0) || seal(1) || ... || seal_last(n-1)
//! header  = "VLB1" || version (1) || log2 chunk size (16) || nonce prefix (7)   13 bytes
//! seal(i) = ChaCha20-Poly1305(key, prefix || be32(i) || last?1:0, aad = header, chunk i)
//! chunks  = (file || 0x00 * (padded - plain)) cut in 64 KiB pieces (the last may be shorter)
//! padded  = max(4096, padme(plain))
//! ```
//!
//! * The padding is inside the encryption, so the whole blob is
//!   ciphertext and its size depends only on `padded`: the server learns
//!   the Padmé bucket of the file's size (at most 12 % larger, leaking
//!   O(log log size) bits), never the exact size. Files under 4 KiB all
//!   look alike.
//! * The header is the AAD of every chunk, so it cannot be changed; the
//!   STREAM nonce binds each chunk to its position and marks the last one,
//!   so reordered, dropped, duplicated or truncated chunks fail.
//! * The letter carries the key, the exact file size, the blob size and
//!   the BLAKE3 digest of the whole blob as stored. The digest commits the
//!   sender to those exact bytes (a sender holding a key could otherwise
//!   make two blobs under it), lets a downloader refuse a swapped blob
//!   before it writes anything, and names the blob without its key.
//!
//! [`Sealer`] and [`Opener`] work one chunk at a time, so neither side
//! ever holds a whole file: memory stays flat whatever the size.

use crate::id::BlobId;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{KeyInit, Payload};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Plaintext bytes per chunk.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Poly1305 tag added to every chunk.
pub const TAG_BYTES: usize = 16;
/// Bytes of a sealed full chunk.
pub const SEALED_CHUNK_BYTES: usize = CHUNK_BYTES + TAG_BYTES;
/// Bytes of the header at the start of every blob.
pub const HEADER_BYTES: usize = 13;
/// STREAM nonce prefix (ChaCha20-Poly1305's 12-byte nonce less BE32's 5).
pub const NONCE_PREFIX_BYTES: usize = 7;
/// Smallest padded size: every file under it looks the same.
pub const MIN_PADDED_BYTES: u64 = 4096;
/// Smallest blob the format makes (an empty file's): a server refuses to
/// create a shorter one, which no client would fill.
pub const MIN_BLOB_BYTES: u64 = HEADER_BYTES as u64 + MIN_PADDED_BYTES + TAG_BYTES as u64;
/// Largest file the format takes (far below the STREAM's 2^32 chunks).
pub const MAX_PLAIN_BYTES: u64 = 64 << 30;
/// Most attachments on one letter.
pub const MAX_ATTACHMENTS: usize = 64;
/// Longest attachment name (UTF-8 bytes).
pub const MAX_NAME_BYTES: usize = 255;
/// Longest media type.
pub const MAX_MEDIA_TYPE_BYTES: usize = 127;

const MAGIC: &[u8; 4] = b"VLB1";
const VERSION: u8 = 1;
const CHUNK_LOG2: u8 = 16;

/// Why a blob, or a reference to one, is refused. Never quotes content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("blob header is not a Valise blob header (version {VERSION}, 64 KiB chunks)")]
    Header,
    #[error("file of {0} bytes is larger than attachments may be ({MAX_PLAIN_BYTES} bytes)")]
    TooLarge(u64),
    #[error("blob is {got} bytes, the letter says {expected}")]
    Size { got: u64, expected: u64 },
    #[error("chunk {0} does not decrypt: the blob was altered, reordered or cut short")]
    Chunk(u32),
    #[error("chunk {index} holds {got} bytes of the file, expected {expected}")]
    ChunkLength {
        index: u32,
        got: usize,
        expected: usize,
    },
    #[error("the blob goes on after its last chunk")]
    Trailing,
    #[error("the blob ends before its last chunk ({got} of {expected} chunks)")]
    Truncated { got: u32, expected: u32 },
    #[error("chunk {0} has padding that is not zero")]
    Padding(u32),
    #[error("the blob's digest is not the one the letter names")]
    Digest,
    #[error("attachment {field} has {got} bytes, at most {max}")]
    FieldTooLarge {
        field: &'static str,
        got: usize,
        max: usize,
    },
    #[error("attachment {0} contains control characters")]
    Control(&'static str),
}

/// A blob's 256-bit key: wiped on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct BlobKey([u8; 32]);

impl BlobKey {
    /// Wraps key bytes the caller drew from a secure random generator.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key, to store sealed in the client's home.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&self.0.into())
    }
}

impl PartialEq for BlobKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for BlobKey {}

impl std::fmt::Debug for BlobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobKey(***)")
    }
}

/// The BLAKE3 digest of a whole blob as stored.
pub type BlobDigest = [u8; 32];

/// The sizes of a blob, all derived from the file's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The file's exact size (only the letter says it).
    pub plain: u64,
    /// The file plus zero padding, as encrypted.
    pub padded: u64,
    /// STREAM chunks (at least one).
    pub chunks: u32,
    /// Bytes stored on the server: header, chunks and tags.
    pub blob: u64,
}

impl Layout {
    /// The layout of a blob holding `plain` bytes.
    pub fn for_plain(plain: u64) -> Result<Self, BlobError> {
        if plain > MAX_PLAIN_BYTES {
            return Err(BlobError::TooLarge(plain));
        }
        let padded = padme(plain).max(MIN_PADDED_BYTES);
        let chunks = padded.div_ceil(CHUNK_BYTES as u64);
        let chunks = u32::try_from(chunks).map_err(|_| BlobError::TooLarge(plain))?;
        let blob = HEADER_BYTES as u64 + padded + u64::from(chunks) * TAG_BYTES as u64;
        Ok(Self {
            plain,
            padded,
            chunks,
            blob,
        })
    }

    /// Bytes of plaintext (file and padding) in chunk `index`.
    fn chunk_len(&self, index: u32) -> usize {
        let start = u64::from(index) * CHUNK_BYTES as u64;
        // Never more than CHUNK_BYTES, so the cast cannot truncate.
        self.padded.saturating_sub(start).min(CHUNK_BYTES as u64) as usize
    }

    /// Bytes of the file (the rest is padding) in chunk `index`.
    pub fn file_bytes_in(&self, index: u32) -> usize {
        let start = u64::from(index) * CHUNK_BYTES as u64;
        self.plain.saturating_sub(start).min(CHUNK_BYTES as u64) as usize
    }

    /// Bytes of the sealed chunk `index`.
    fn sealed_len(&self, index: u32) -> usize {
        self.chunk_len(index) + TAG_BYTES
    }
}

/// Padmé (Nikitin et al., PETS 2019): rounds `len` up by clearing all but
/// its top ⌊log2 ⌊log2 len⌋⌋ + 1 bits; overhead at most 12 %.
pub fn padme(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = 63 - u64::from(len.leading_zeros());
    let s = 64 - u64::from(e.leading_zeros());
    let low = e - s;
    let mask = (1u64 << low) - 1;
    (len + mask) & !mask
}

/// Parses and checks a blob header; returns the nonce prefix.
pub fn parse_header(header: &[u8]) -> Result<[u8; NONCE_PREFIX_BYTES], BlobError> {
    let h: &[u8; HEADER_BYTES] = header.try_into().map_err(|_| BlobError::Header)?;
    if &h[..4] != MAGIC || h[4] != VERSION || h[5] != CHUNK_LOG2 {
        return Err(BlobError::Header);
    }
    let mut prefix = [0u8; NONCE_PREFIX_BYTES];
    prefix.copy_from_slice(&h[6..]);
    Ok(prefix)
}

fn header(prefix: &[u8; NONCE_PREFIX_BYTES]) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..4].copy_from_slice(MAGIC);
    h[4] = VERSION;
    h[5] = CHUNK_LOG2;
    h[6..].copy_from_slice(prefix);
    h
}

/// Seals a file chunk by chunk. Sealing again with the same key and
/// prefix yields the same bytes, which is how an upload resumes; a changed
/// file must get a new key.
pub struct Sealer {
    stream: Option<EncryptorBE32<ChaCha20Poly1305>>,
    header: [u8; HEADER_BYTES],
    layout: Layout,
    next: u32,
    digest: blake3::Hasher,
    /// The padded plaintext of one chunk, reused.
    buf: Vec<u8>,
}

impl Sealer {
    /// Starts sealing a file of `plain` bytes.
    pub fn new(
        key: &BlobKey,
        prefix: &[u8; NONCE_PREFIX_BYTES],
        plain: u64,
    ) -> Result<Self, BlobError> {
        let layout = Layout::for_plain(plain)?;
        let header = header(prefix);
        let mut digest = blake3::Hasher::new();
        digest.update(&header);
        Ok(Self {
            stream: Some(EncryptorBE32::from_aead(key.cipher(), prefix.into())),
            header,
            layout,
            next: 0,
            digest,
            buf: Vec::with_capacity(CHUNK_BYTES),
        })
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The header, the first bytes of the blob.
    pub fn header(&self) -> &[u8; HEADER_BYTES] {
        &self.header
    }

    /// How many file bytes the next chunk takes (0 when all are sealed).
    pub fn next_file_bytes(&self) -> usize {
        if self.next >= self.layout.chunks {
            0
        } else {
            self.layout.file_bytes_in(self.next)
        }
    }

    /// Seals the next chunk from exactly [`Self::next_file_bytes`] bytes of
    /// the file (the padding is added here).
    pub fn seal_next(&mut self, file: &[u8]) -> Result<Vec<u8>, BlobError> {
        let index = self.next;
        let expected = self.next_file_bytes();
        if file.len() != expected {
            return Err(BlobError::ChunkLength {
                index,
                got: file.len(),
                expected,
            });
        }
        self.buf.clear();
        self.buf.extend_from_slice(file);
        self.buf.resize(self.layout.chunk_len(index), 0);
        let payload = Payload {
            msg: &self.buf,
            aad: &self.header,
        };
        let last = index + 1 == self.layout.chunks;
        let stream = self.stream.take().ok_or(BlobError::Trailing)?;
        let sealed = if last {
            stream.encrypt_last(payload)
        } else {
            let mut stream = stream;
            let out = stream.encrypt_next(payload);
            self.stream = Some(stream);
            out
        }
        .map_err(|_| BlobError::Chunk(index))?;
        self.next += 1;
        self.digest.update(&sealed);
        Ok(sealed)
    }

    /// The digest of the whole blob, once every chunk is sealed.
    pub fn finish(self) -> Result<BlobDigest, BlobError> {
        if self.next != self.layout.chunks {
            return Err(BlobError::Truncated {
                got: self.next,
                expected: self.layout.chunks,
            });
        }
        Ok(*self.digest.finalize().as_bytes())
    }
}

/// Opens a downloaded blob from bytes pushed in any pieces, checking every
/// chunk as it completes; [`Opener::finish`] checks the end and the digest.
///
/// ```text
/// bytes ─▶ header (parsed, AAD) ─▶ chunk i: decrypt(i, last = i == n-1) ─▶ file bytes
///                                                 └─ padding must be zero
/// end ─▶ all n chunks seen, nothing after, BLAKE3(blob) == letter's digest
/// ```
pub struct Opener {
    stream: Option<DecryptorBE32<ChaCha20Poly1305>>,
    key: BlobKey,
    header: Option<[u8; HEADER_BYTES]>,
    layout: Layout,
    next: u32,
    digest: blake3::Hasher,
    pending: Vec<u8>,
}

impl Opener {
    /// Starts opening the blob an attachment reference names.
    pub fn new(attachment: &AttachmentRef) -> Result<Self, BlobError> {
        let layout = Layout::for_plain(attachment.size)?;
        if layout.blob != attachment.blob_size {
            return Err(BlobError::Size {
                got: attachment.blob_size,
                expected: layout.blob,
            });
        }
        Ok(Self {
            stream: None,
            key: attachment.key.clone(),
            header: None,
            layout,
            next: 0,
            digest: blake3::Hasher::new(),
            pending: Vec::with_capacity(SEALED_CHUNK_BYTES),
        })
    }

    /// Takes the next bytes of the blob; returns the file bytes of the
    /// chunks they complete, each checked.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<Vec<u8>, BlobError> {
        self.digest.update(bytes);
        // The file bytes are never more than the blob bytes: sized once,
        // an 8 MiB part is not copied again as it grows.
        let mut out = Vec::with_capacity(bytes.len());
        while !bytes.is_empty() {
            let want = match self.header {
                None => HEADER_BYTES,
                Some(_) if self.next < self.layout.chunks => self.layout.sealed_len(self.next),
                Some(_) => return Err(BlobError::Trailing),
            };
            let take = (want - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == want {
                self.complete(&mut out)?;
                self.pending.clear();
            }
        }
        Ok(out)
    }

    fn complete(&mut self, out: &mut Vec<u8>) -> Result<(), BlobError> {
        let Some(header) = self.header else {
            let prefix = parse_header(&self.pending)?;
            self.stream = Some(DecryptorBE32::from_aead(
                self.key.cipher(),
                (&prefix).into(),
            ));
            self.header = Some(header_bytes(&self.pending)?);
            return Ok(());
        };
        let index = self.next;
        let payload = Payload {
            msg: &self.pending,
            aad: &header,
        };
        let stream = self.stream.take().ok_or(BlobError::Trailing)?;
        let plain = if index + 1 == self.layout.chunks {
            stream.decrypt_last(payload)
        } else {
            let mut stream = stream;
            let plain = stream.decrypt_next(payload);
            self.stream = Some(stream);
            plain
        }
        .map_err(|_| BlobError::Chunk(index))?;
        let file = self.layout.file_bytes_in(index);
        if plain
            .get(file..)
            .is_none_or(|pad| pad.iter().any(|&b| b != 0))
        {
            return Err(BlobError::Padding(index));
        }
        out.extend_from_slice(&plain[..file]);
        self.next += 1;
        Ok(())
    }

    /// Checks that the whole blob came, nothing more, and its digest.
    pub fn finish(self, expected: &BlobDigest) -> Result<(), BlobError> {
        if self.next != self.layout.chunks || !self.pending.is_empty() {
            return Err(BlobError::Truncated {
                got: self.next,
                expected: self.layout.chunks,
            });
        }
        let got = self.digest.finalize();
        if bool::from(got.as_bytes().ct_eq(expected)) {
            Ok(())
        } else {
            Err(BlobError::Digest)
        }
    }
}

fn header_bytes(b: &[u8]) -> Result<[u8; HEADER_BYTES], BlobError> {
    b.try_into().map_err(|_| BlobError::Header)
}

/// What a letter says about one attachment: where its blob is, how to open
/// and check it, and what the file was. Inside the encrypted letter only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    #[serde(rename = "i")]
    pub blob: BlobId,
    #[serde(rename = "k", with = "fixed_bytes")]
    pub key: BlobKey,
    /// BLAKE3 of the whole blob as stored.
    #[serde(rename = "h", with = "fixed_bytes")]
    pub digest: BlobDigest,
    /// The file's exact size.
    #[serde(rename = "n")]
    pub size: u64,
    /// The blob's size on the server (follows from `size`; checked).
    #[serde(rename = "z")]
    pub blob_size: u64,
    /// The file's name as the sender had it (no directories).
    #[serde(rename = "f")]
    pub name: String,
    /// Media type, e.g. `application/pdf`.
    #[serde(rename = "t")]
    pub media_type: String,
}

impl AttachmentRef {
    /// Checks what a sender must refuse to seal and a receiver to show.
    pub fn check(&self) -> Result<(), BlobError> {
        let field = |field, text: &str, max| {
            if text.len() > max {
                Err(BlobError::FieldTooLarge {
                    field,
                    got: text.len(),
                    max,
                })
            } else if text.chars().any(char::is_control) {
                Err(BlobError::Control(field))
            } else {
                Ok(())
            }
        };
        field("name", &self.name, MAX_NAME_BYTES)?;
        field("media type", &self.media_type, MAX_MEDIA_TYPE_BYTES)?;
        let layout = Layout::for_plain(self.size)?;
        if layout.blob != self.blob_size {
            return Err(BlobError::Size {
                got: self.blob_size,
                expected: layout.blob,
            });
        }
        Ok(())
    }
}

impl std::fmt::Debug for AttachmentRef {
    // Neither the key nor the name reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentRef")
            .field("blob", &self.blob)
            .field("size", &self.size)
            .field("blob_size", &self.blob_size)
            .finish_non_exhaustive()
    }
}

/// Fixed-size byte arrays as CBOR byte strings.
mod fixed_bytes {
    use serde::de::Error as _;
    use serde::{Deserializer, Serializer};

    pub trait Fixed: Sized {
        fn bytes(&self) -> &[u8];
        fn from(b: &[u8]) -> Option<Self>;
    }
    impl Fixed for [u8; 32] {
        fn bytes(&self) -> &[u8] {
            self
        }
        fn from(b: &[u8]) -> Option<Self> {
            b.try_into().ok()
        }
    }
    impl Fixed for super::BlobKey {
        fn bytes(&self) -> &[u8] {
            &self.0
        }
        fn from(b: &[u8]) -> Option<Self> {
            b.try_into().ok().map(Self)
        }
    }

    pub fn serialize<T: Fixed, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v.bytes())
    }

    pub fn deserialize<'de, T: Fixed, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<T: Fixed> serde::de::Visitor<'_> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a 32-byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<T, E> {
                T::from(v).ok_or_else(|| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(V(std::marker::PhantomData))
            .map_err(|e: D::Error| D::Error::custom(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> BlobKey {
        BlobKey::from_bytes([b; 32])
    }

    /// Seals `file` whole; returns the blob and its reference.
    fn seal(file: &[u8], k: &BlobKey) -> (Vec<u8>, AttachmentRef) {
        let mut s = Sealer::new(k, &[9; 7], file.len() as u64).unwrap();
        let mut blob = s.header().to_vec();
        let mut at = 0;
        for _ in 0..s.layout().chunks {
            let n = s.next_file_bytes();
            blob.extend(s.seal_next(&file[at..at + n]).unwrap());
            at += n;
        }
        let layout = s.layout();
        let digest = s.finish().unwrap();
        assert_eq!(blob.len() as u64, layout.blob);
        let r = AttachmentRef {
            blob: BlobId::from_bytes([1; 16]),
            key: k.clone(),
            digest,
            size: file.len() as u64,
            blob_size: layout.blob,
            name: "annex.pdf".into(),
            media_type: "application/pdf".into(),
        };
        (blob, r)
    }

    /// Opens `blob` pushed in pieces of `piece` bytes.
    fn open(blob: &[u8], r: &AttachmentRef, piece: usize) -> Result<Vec<u8>, BlobError> {
        let mut o = Opener::new(r)?;
        let mut out = Vec::new();
        for p in blob.chunks(piece.max(1)) {
            out.extend(o.push(p)?);
        }
        o.finish(&r.digest)?;
        Ok(out)
    }

    fn file(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn no_blob_is_shorter_than_an_empty_files() {
        assert_eq!(Layout::for_plain(0).unwrap().blob, MIN_BLOB_BYTES);
        for plain in [1, 4096, 4097, 1 << 20, MAX_PLAIN_BYTES] {
            assert!(Layout::for_plain(plain).unwrap().blob >= MIN_BLOB_BYTES);
        }
    }

    #[test]
    fn round_trips_at_edge_sizes() {
        for len in [
            0,
            1,
            4095,
            4096,
            CHUNK_BYTES - 1,
            CHUNK_BYTES,
            CHUNK_BYTES + 1,
            3 * CHUNK_BYTES + 17,
            1 << 20,
        ] {
            let f = file(len);
            let (blob, r) = seal(&f, &key(3));
            r.check().unwrap();
            for piece in [1000, SEALED_CHUNK_BYTES, 1 << 20] {
                assert_eq!(open(&blob, &r, piece).unwrap(), f, "len {len}");
            }
        }
    }

    #[test]
    fn sizes_are_bucketed() {
        let a = Layout::for_plain(1_000_000).unwrap();
        let b = Layout::for_plain(1_010_000).unwrap();
        assert_eq!(a.blob, b.blob);
        assert_eq!(
            Layout::for_plain(1).unwrap(),
            Layout::for_plain(4000).unwrap().with_plain(1)
        );
        for len in [5000u64, 1 << 20, 123_456_789, 1 << 30] {
            let p = padme(len);
            assert!(p >= len && p - len <= len * 12 / 100, "{len} -> {p}");
        }
    }

    impl Layout {
        fn with_plain(self, plain: u64) -> Self {
            Self { plain, ..self }
        }
    }

    #[test]
    fn every_attack_on_the_blob_fails() {
        let f = file(3 * CHUNK_BYTES + 100);
        let (blob, r) = seal(&f, &key(3));
        let chunk = |i: usize| HEADER_BYTES + i * SEALED_CHUNK_BYTES;
        // Truncated, last chunk dropped, an extra byte.
        assert!(open(&blob[..blob.len() - 1], &r, 4096).is_err());
        assert!(open(&blob[..chunk(3)], &r, 4096).is_err());
        let mut longer = blob.clone();
        longer.push(0);
        assert!(open(&longer, &r, 4096).is_err());
        // Two chunks swapped.
        let mut swapped = blob.clone();
        let (a, b) = swapped.split_at_mut(chunk(1));
        a[chunk(0)..].swap_with_slice(&mut b[..SEALED_CHUNK_BYTES]);
        assert_eq!(open(&swapped, &r, 4096), Err(BlobError::Chunk(0)));
        // Another key, another blob of the same size.
        let mut other = r.clone();
        other.key = key(4);
        assert!(open(&blob, &other, 4096).is_err());
        let (blob2, _) = seal(&file(3 * CHUNK_BYTES + 99), &key(3));
        assert_eq!(blob2.len(), blob.len());
        assert!(open(&blob2, &r, 4096).is_err());
        // A size that does not match the blob (the size itself is the
        // signed sender's word, like the rest of the letter).
        let mut lie = r.clone();
        lie.size += 1 << 20;
        assert!(open(&blob, &lie, 4096).is_err());
    }

    #[test]
    fn debug_hides_key_and_name() {
        let (_, r) = seal(b"x", &key(0xab));
        let s = format!("{r:?} {:?}", r.key);
        assert!(
            !s.contains("annex") && !s.contains("171") && !s.contains("ab, ab"),
            "{s}"
        );
    }

    #[test]
    fn reference_round_trips_and_checks_limits() {
        let (_, mut r) = seal(b"hello", &key(1));
        let mut cbor = Vec::new();
        ciborium::into_writer(&r, &mut cbor).unwrap();
        let back: AttachmentRef = ciborium::from_reader(&cbor[..]).unwrap();
        assert_eq!(back, r);
        r.name = "a\nb".into();
        assert_eq!(r.check(), Err(BlobError::Control("name")));
        r.name = "x".repeat(MAX_NAME_BYTES + 1);
        assert!(r.check().is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn any_size_round_trips(len in 0usize..(4 * CHUNK_BYTES), piece in 1usize..100_000) {
            let f = file(len);
            let (blob, r) = seal(&f, &key(7));
            prop_assert_eq!(open(&blob, &r, piece).unwrap(), f);
        }

        #[test]
        fn any_flipped_bit_fails(len in 0usize..(3 * CHUNK_BYTES), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let (mut blob, r) = seal(&file(len), &key(7));
            let i = at.index(blob.len());
            blob[i] ^= 1 << bit;
            prop_assert!(open(&blob, &r, 8192).is_err());
        }

        #[test]
        fn any_truncation_fails(len in 0usize..(3 * CHUNK_BYTES), at in any::<prop::sample::Index>()) {
            let (blob, r) = seal(&file(len), &key(7));
            let cut = at.index(blob.len());
            prop_assert!(open(&blob[..cut], &r, 8192).is_err());
        }

        #[test]
        fn opener_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..5000), size in 0u64..20_000) {
            let blob_size = Layout::for_plain(size).unwrap().blob;
            let r = AttachmentRef { size, blob_size, ..seal(b"", &key(1)).1 };
            let _ = open(&bytes, &r, 777);
            let _ = parse_header(&bytes[..bytes.len().min(HEADER_BYTES)]);
        }
    }
}
