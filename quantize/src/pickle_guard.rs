//! Pickle is a program: loading one in Python calls whatever functions it names. Torch
//! checkpoints only ever name a short list of them (tensor rebuilders, storage types,
//! `OrderedDict`), so every pickle of a checkpoint is checked against that list before anything
//! else reads it, and a file naming anything else (`os.system`, `builtins.eval`, …) is refused
//! with the name in the error. Nothing is ever executed either way: the reader interprets
//! opcodes itself; the check exists so that a hostile file is named as such rather than read
//! halfway.
//!
//! The walk below is a small stack machine that follows every opcode of protocols 0-5 and keeps
//! track of which stack values are strings, because `STACK_GLOBAL` takes its module and name from
//! the stack (possibly through the memo). A name it cannot resolve to a constant string is
//! refused too. The same walk bounds the input: a pickle that never reaches `STOP` is reported
//! as truncated.
//!
//! Containers: in a torch zip file every `*.pkl` entry is checked (after the zip's entries are
//! checked for sizes that could not be real, see [`check_zip`]); a legacy file is a sequence of
//! five pickles (magic, protocol, system info, the object, the storage keys), all checked.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// The globals torch checkpoints (torch.save of state dicts, mmcls and timm training files)
/// reference. Pairs of (module, names).
const ALLOWED: &[(&str, &[&str])] = &[
    ("collections", &["OrderedDict"]),
    (
        "torch._utils",
        &[
            "_rebuild_tensor",
            "_rebuild_tensor_v2",
            "_rebuild_tensor_v3",
            "_rebuild_parameter",
            "_rebuild_parameter_with_state",
        ],
    ),
    ("torch._tensor", &["_rebuild_from_type_v2"]),
    ("torch.nn.parameter", &["Parameter"]),
    (
        "torch",
        &[
            "Tensor",
            "Size",
            "device",
            "FloatStorage",
            "DoubleStorage",
            "HalfStorage",
            "BFloat16Storage",
            "LongStorage",
            "IntStorage",
            "ShortStorage",
            "CharStorage",
            "ByteStorage",
            "BoolStorage",
            "UntypedStorage",
            "float32",
            "float64",
            "float16",
            "bfloat16",
            "int64",
            "int32",
            "int16",
            "int8",
            "uint8",
            "bool",
        ],
    ),
    ("builtins", &["set", "frozenset"]),
    ("__builtin__", &["set", "frozenset"]),
    // Bytes in protocol 2 (numpy arrays and scalars in training metadata).
    ("_codecs", &["encode"]),
    ("numpy", &["dtype", "ndarray"]),
    ("numpy.core.multiarray", &["scalar", "_reconstruct"]),
    ("numpy._core.multiarray", &["scalar", "_reconstruct"]),
    // timm's training checkpoints keep the command line's arguments, mmengine's its logs.
    ("argparse", &["Namespace"]),
    ("mmengine.logging.history_buffer", &["HistoryBuffer"]),
];

fn allowed(module: &str, name: &str) -> bool {
    ALLOWED
        .iter()
        .any(|(m, names)| *m == module && names.contains(&name))
}

/// The largest pickle accepted (a ResNeXt-101 32x8d state dict's is about 60 kB).
pub const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// A value on the walk's stack: all it needs to know is whether it is a string.
#[derive(Clone, Debug, PartialEq)]
enum Val {
    Str(String),
    Other,
    Mark,
}

/// Why a pickle was refused.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// A global outside [`ALLOWED`]: `module.name`.
    Global(String),
    /// Anything else: malformed, truncated, an extension code, a computed name.
    Malformed(String),
    /// A zip file that is not one, or whose entries claim sizes it cannot hold.
    Zip(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Global(g) => write!(
                f,
                "its pickle references `{g}`, which is not among the functions and classes torch checkpoints use; refused (nothing was executed)"
            ),
            Refusal::Malformed(m) => write!(f, "malformed pickle: {m}"),
            Refusal::Zip(m) => write!(f, "{m}"),
        }
    }
}

struct Walk<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Val>,
    memo: HashMap<u64, Val>,
}

/// The longest string kept as a possible global name (longer ones can only be data).
const MAX_NAME: usize = 256;
/// The deepest stack and largest memo the walk keeps.
const MAX_ENTRIES: usize = 1 << 20;

/// A short UTF-8 string is kept (it may name a global), anything else is just a value.
fn name_or_other(bytes: &[u8]) -> Val {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.len() <= MAX_NAME => Val::Str(s.to_string()),
        _ => Val::Other,
    }
}

fn bad(m: impl Into<String>) -> Refusal {
    Refusal::Malformed(m.into())
}

impl<'a> Walk<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], Refusal> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| bad(format!("truncated at byte {}", self.pos)))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<u64, Refusal> {
        let b = self.take(n as u64)?;
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(b);
        Ok(u64::from_le_bytes(v))
    }

    fn line(&mut self) -> Result<&'a str, Refusal> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad(format!("unterminated line at byte {}", self.pos)))?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| bad("a line is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }

    /// Pushes `v`; the stack and memo are bounded so that a hostile pickle cannot make the walk
    /// allocate without bound (a torch pickle's stack stays a few dozen deep).
    fn push(&mut self, v: Val) {
        self.stack.push(v);
    }

    fn pop(&mut self) -> Result<Val, Refusal> {
        self.stack
            .pop()
            .ok_or_else(|| bad(format!("stack underflow at byte {}", self.pos)))
    }

    fn pop_n(&mut self, n: usize) -> Result<(), Refusal> {
        for _ in 0..n {
            self.pop()?;
        }
        Ok(())
    }

    fn pop_mark(&mut self) -> Result<(), Refusal> {
        loop {
            if self.pop()? == Val::Mark {
                return Ok(());
            }
        }
    }

    fn top(&self) -> Result<Val, Refusal> {
        self.stack
            .last()
            .cloned()
            .ok_or_else(|| bad("memoizing an empty stack"))
    }

    fn global(&mut self, module: &str, name: &str) -> Result<(), Refusal> {
        if allowed(module, name) {
            Ok(())
        } else {
            Err(Refusal::Global(format!("{module}.{name}")))
        }
    }

    fn string(&mut self, len_bytes: usize) -> Result<(), Refusal> {
        let n = self.uint(len_bytes)?;
        let s = self.take(n)?;
        self.push(name_or_other(s));
        Ok(())
    }

    /// Walks one pickle up to its `STOP`; returns the offset after it.
    fn run(&mut self) -> Result<usize, Refusal> {
        loop {
            let at = self.pos;
            if self.stack.len() > MAX_ENTRIES || self.memo.len() > MAX_ENTRIES {
                return Err(bad(format!(
                    "more than {MAX_ENTRIES} values on the stack or in the memo at byte {at}"
                )));
            }
            let op = *self.take(1)?.first().expect("one byte");
            match op {
                b'.' => return Ok(self.pos),    // STOP
                0x80 => drop(self.take(1)?),    // PROTO
                0x95 => drop(self.take(8)?),    // FRAME
                b'(' => self.push(Val::Mark),   // MARK
                b'0' => drop(self.pop()?),      // POP
                b'1' => self.pop_mark()?,       // POP_MARK
                b'2' => self.push(self.top()?), // DUP
                b'N' | 0x88 | 0x89 | b'}' | b']' | b')' | 0x8f | 0x97 => self.push(Val::Other),
                b'K' => self.push_after(1)?,        // BININT1
                b'M' => self.push_after(2)?,        // BININT2
                b'J' => self.push_after(4)?,        // BININT
                b'G' => self.push_after(8)?,        // BINFLOAT
                0x8a => self.push_sized(1)?,        // LONG1
                0x8b => self.push_sized(4)?,        // LONG4
                b'C' => self.push_sized(1)?,        // SHORT_BINBYTES
                b'B' => self.push_sized(4)?,        // BINBYTES
                0x8e | 0x96 => self.push_sized(8)?, // BINBYTES8, BYTEARRAY8
                b'I' | b'L' | b'F' | b'P' => {
                    // INT, LONG, FLOAT, PERSID: a line.
                    self.line()?;
                    self.push(Val::Other)
                }
                b'S' => {
                    // STRING: a quoted repr on a line.
                    let l = self.line()?;
                    self.push(name_or_other(
                        l.trim_matches(|c| c == '\'' || c == '"').as_bytes(),
                    ))
                }
                b'V' => {
                    let l = self.line()?;
                    self.push(name_or_other(l.as_bytes()))
                }
                b'U' | 0x8c => self.string(1)?, // SHORT_BINSTRING, SHORT_BINUNICODE
                b'T' | b'X' => self.string(4)?, // BINSTRING, BINUNICODE
                0x8d => self.string(8)?,        // BINUNICODE8
                b'c' => {
                    // GLOBAL module\nname\n
                    let (m, n) = (self.line()?, self.line()?);
                    self.global(m, n)?;
                    self.push(Val::Other)
                }
                b'i' => {
                    // INST module\nname\n: calls the class on the items above the mark.
                    let (m, n) = (self.line()?, self.line()?);
                    self.global(m, n)?;
                    self.pop_mark()?;
                    self.push(Val::Other)
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Val::Str(m), Val::Str(n)) => self.global(&m, &n)?,
                        _ => {
                            return Err(bad(format!(
                                "STACK_GLOBAL at byte {at} names a global that is not a constant string"
                            )))
                        }
                    }
                    self.push(Val::Other)
                }
                0x82..=0x84 => {
                    return Err(bad(format!(
                        "extension code (EXT) at byte {at}: torch never writes one"
                    )))
                }
                b't' | b'l' | b'd' | 0x91 | b'o' => {
                    // TUPLE, LIST, DICT, FROZENSET, OBJ: items above the mark become one object.
                    self.pop_mark()?;
                    self.push(Val::Other)
                }
                b'e' | b'u' | 0x90 => self.pop_mark()?, // APPENDS, SETITEMS, ADDITEMS
                0x85 => self.replace(1)?,               // TUPLE1
                0x86 => self.replace(2)?,               // TUPLE2
                0x87 => self.replace(3)?,               // TUPLE3
                b'a' | b'b' => self.pop_n(1)?,          // APPEND, BUILD
                b's' => self.pop_n(2)?,                 // SETITEM
                b'R' | 0x81 => self.replace(2)?,        // REDUCE, NEWOBJ
                0x92 => self.replace(3)?,               // NEWOBJ_EX
                b'Q' | 0x98 => self.replace(1)?,        // BINPERSID, READONLY_BUFFER
                b'p' => {
                    // PUT idx\n
                    let idx = self.line()?.parse().map_err(|_| bad("PUT index"))?;
                    self.memo.insert(idx, self.top()?);
                }
                b'q' | b'r' => {
                    // BINPUT, LONG_BINPUT
                    let idx = self.uint(if op == b'q' { 1 } else { 4 })?;
                    self.memo.insert(idx, self.top()?);
                }
                0x94 => {
                    // MEMOIZE
                    let idx = self.memo.len() as u64;
                    self.memo.insert(idx, self.top()?);
                }
                b'g' | b'h' | b'j' => {
                    // GET, BINGET, LONG_BINGET
                    let idx = match op {
                        b'g' => self.line()?.parse().map_err(|_| bad("GET index"))?,
                        b'h' => self.uint(1)?,
                        _ => self.uint(4)?,
                    };
                    let v = self.memo.get(&idx).cloned().ok_or_else(|| {
                        bad(format!("memo entry {idx} read before it was written"))
                    })?;
                    self.push(v)
                }
                other => {
                    return Err(bad(format!("unknown opcode 0x{other:02x} at byte {at}")));
                }
            }
        }
    }

    fn push_after(&mut self, n: u64) -> Result<(), Refusal> {
        self.take(n)?;
        self.push(Val::Other);
        Ok(())
    }

    fn push_sized(&mut self, len_bytes: usize) -> Result<(), Refusal> {
        let n = self.uint(len_bytes)?;
        self.take(n)?;
        self.push(Val::Other);
        Ok(())
    }

    fn replace(&mut self, n: usize) -> Result<(), Refusal> {
        self.pop_n(n)?;
        self.push(Val::Other);
        Ok(())
    }
}

/// Checks one pickle at the start of `data`; returns its length (up to and including `STOP`).
pub fn check_pickle(data: &[u8]) -> Result<usize, Refusal> {
    let mut w = Walk {
        data,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
    };
    w.run()
}

/// Checks the pickles that open a torch legacy file: magic number, protocol version, system
/// info, the saved object and the storage keys.
pub fn check_legacy(head: &[u8]) -> Result<(), Refusal> {
    let mut at = 0;
    for _ in 0..5 {
        at += check_pickle(&head[at..])?;
    }
    Ok(())
}

/// The largest zip entry a checkpoint may declare: 16 GiB (a ResNeXt-101 32x8d in float64 is
/// 0.7 GB).
pub const MAX_ENTRY_BYTES: u64 = 16 << 30;

/// Checks a torch zip file: every entry's declared size against the file (a compressed entry
/// may not claim more than 1000x its compressed size, none more than [`MAX_ENTRY_BYTES`]) before
/// anything is inflated, then every `.pkl` entry's globals.
pub fn check_zip(path: &Path) -> Result<(), Refusal> {
    let file = std::fs::File::open(path).map_err(|e| Refusal::Zip(e.to_string()))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| Refusal::Zip(format!("not a valid zip file: {e}")))?;
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| Refusal::Zip(format!("zip entry {i}: {e}")))?;
        let name = entry.name().map(|n| n.into_owned()).unwrap_or_default();
        let (size, packed) = (entry.size(), entry.compressed_size());
        if size > MAX_ENTRY_BYTES || size > packed.saturating_mul(1000).saturating_add(1 << 20) {
            return Err(Refusal::Zip(format!(
                "zip entry `{name}` claims {size} bytes from {packed} compressed (a zip bomb?)"
            )));
        }
    }
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| Refusal::Zip(format!("zip entry {i}: {e}")))?;
        let name = entry.name().map(|n| n.into_owned()).unwrap_or_default();
        if !name.ends_with(".pkl") {
            continue;
        }
        if entry.size() > MAX_PICKLE_BYTES {
            return Err(Refusal::Zip(format!(
                "pickle `{name}` is {} bytes, above the supported {MAX_PICKLE_BYTES}",
                entry.size()
            )));
        }
        let mut bytes = Vec::new();
        entry
            .by_ref()
            .take(MAX_PICKLE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| Refusal::Zip(format!("zip entry `{name}`: {e}")))?;
        check_pickle(&bytes).map_err(|r| match r {
            Refusal::Malformed(m) => Refusal::Malformed(format!("`{name}`: {m}")),
            global => global,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pickle.dumps(OrderedDict(a=1), protocol=2)`.
    const ORDERED_DICT: &[u8] =
        b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00aq\x02K\x01s.";

    #[test]
    fn torch_globals_pass_and_the_length_is_the_pickle() {
        let mut two = ORDERED_DICT.to_vec();
        two.extend_from_slice(b"\x80\x02K\x05.trailing");
        assert_eq!(check_pickle(&two), Ok(ORDERED_DICT.len()));
    }

    #[test]
    fn os_system_by_global_is_refused_by_name() {
        // pickle.dumps of an object whose __reduce__ is (os.system, ("echo pwned",)).
        let p = b"\x80\x02cposix\nsystem\nq\x00X\n\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.";
        let r = check_pickle(p).unwrap_err();
        assert_eq!(r, Refusal::Global("posix.system".into()));
        assert!(r.to_string().contains("`posix.system`"), "{r}");
    }

    #[test]
    fn stack_global_through_the_memo_is_resolved_and_refused() {
        // Protocol 4: the module is memoized, then fetched back for STACK_GLOBAL.
        let p = b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94\x8c\x011\x94\x85R.";
        assert_eq!(
            check_pickle(p),
            Err(Refusal::Global("builtins.eval".into()))
        );
        // The module is memoized, popped, and fetched back with BINGET.
        let p = b"\x80\x04\x8c\x08builtins\x940h\x00\x8c\x04exec\x93.";
        assert_eq!(
            check_pickle(p),
            Err(Refusal::Global("builtins.exec".into()))
        );
        let ok = b"\x80\x04\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93)R.";
        assert_eq!(check_pickle(ok), Ok(ok.len()));
    }

    #[test]
    fn a_pickle_that_would_grow_without_bound_is_refused() {
        // One 1 MB string, then DUP over and over: copies would need gigabytes.
        let mut p = b"\x80\x02X\x00\x00\x10\x00".to_vec();
        p.extend(std::iter::repeat_n(b'a', 1 << 20));
        p.extend(std::iter::repeat_n(b'2', MAX_ENTRIES + 2));
        p.push(b'.');
        let r = check_pickle(&p).unwrap_err();
        assert!(r.to_string().contains("more than 1048576 values"), "{r}");
    }

    #[test]
    fn computed_names_extensions_and_truncation_are_refused() {
        let computed = b"\x80\x04K\x01\x8c\x04eval\x93.";
        assert!(
            matches!(check_pickle(computed), Err(Refusal::Malformed(m)) if m.contains("not a constant string"))
        );
        assert!(
            matches!(check_pickle(b"\x80\x02\x82\x01."), Err(Refusal::Malformed(m)) if m.contains("EXT"))
        );
        assert!(
            matches!(check_pickle(&ORDERED_DICT[..ORDERED_DICT.len() - 1]), Err(Refusal::Malformed(m)) if m.contains("truncated"))
        );
        assert!(matches!(
            check_pickle(b"\x80\x02X\xff\xff\xff\xff."),
            Err(Refusal::Malformed(_))
        ));
        assert!(
            matches!(check_pickle(b"0"), Err(Refusal::Malformed(m)) if m.contains("underflow"))
        );
        assert!(
            matches!(check_pickle(b"h\x07."), Err(Refusal::Malformed(m)) if m.contains("memo entry 7"))
        );
    }
}
