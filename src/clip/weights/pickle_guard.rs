//! A check of PyTorch zip checkpoints before burn-store reads them.
//!
//! burn-store's pickle reader never executes anything: a `REDUCE` of `os.system` becomes an
//! inert placeholder. A file that names such a function was still made to run code under
//! `torch.load`, so duoclip refuses it outright and says which function it names, rather than
//! loading the tensors beside the payload. Zip entry names that climb out of the archive
//! (`../x`, `/etc/x`) are refused for the same reason: `torch.save` never writes them.

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// Largest `data.pkl` read for the check; burn-store refuses larger ones too
/// (`pytorch_reader::MAX_PICKLE_SIZE`).
const MAX_PICKLE_BYTES: u64 = 100 * 1024 * 1024;

/// Refuses a PyTorch zip whose entry names leave the archive or whose `data.pkl` names a
/// Python global a state dict never needs.
pub fn check_pytorch_zip(path: &Path) -> Result<()> {
    let name = path.display().to_string();
    let refuse = |message: String| Error::Checkpoint {
        path: name.clone(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(&name, e))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| refuse(format!("not a readable zip archive ({e})")))?;
    let names = archive
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<zip::result::ZipResult<Vec<String>>>()
        .map_err(|e| refuse(format!("unreadable zip entry name ({e})")))?;
    if let Some(bad) = names.iter().find(|n| !is_inside_archive(n)) {
        return Err(refuse(format!(
            "zip entry `{}` points outside the archive; torch.save never writes such names, \
             so the file was crafted or damaged, and duoclip does not read it",
            bad.escape_debug()
        )));
    }
    let Some(pickle_name) = shortest_data_pkl(&names) else {
        return Err(refuse(
            "no data.pkl entry: not a PyTorch (1.6+) zip checkpoint".into(),
        ));
    };
    let mut pickle = Vec::new();
    archive
        .by_name(&pickle_name)
        .map_err(|e| refuse(format!("cannot open `{pickle_name}` ({e})")))?
        .take(MAX_PICKLE_BYTES + 1)
        .read_to_end(&mut pickle)
        .map_err(|e| refuse(format!("cannot read `{pickle_name}` ({e})")))?;
    if pickle.len() as u64 > MAX_PICKLE_BYTES {
        return Err(refuse(format!(
            "`{pickle_name}` is larger than {MAX_PICKLE_BYTES} bytes; a state dict's pickle is \
             a few megabytes at most"
        )));
    }
    check_pickle(&pickle).map_err(|m| refuse(format!("`{pickle_name}`: {m}")))
}

/// Relative, with no `..` or root component: a name an extractor would keep inside its folder.
fn is_inside_archive(name: &str) -> bool {
    !name.starts_with(['/', '\\'])
        && !name.contains(':')
        && name
            .split(['/', '\\'])
            .all(|part| part != ".." && !part.contains('\0'))
}

/// `data.pkl` at the root or in the top folder, as burn-store finds it.
fn shortest_data_pkl(names: &[String]) -> Option<String> {
    names
        .iter()
        .filter(|n| {
            n.strip_suffix("data.pkl")
                .is_some_and(|root| root.is_empty() || root.ends_with('/'))
        })
        .min_by_key(|n| n.len())
        .cloned()
}

/// Whether `module.name` is something a PyTorch state dict's pickle legitimately refers to:
/// tensor and storage rebuilding, dtypes and devices, the dict and set types, and the numpy
/// scalars some training scripts leave in their metadata (torch's `weights_only` set).
fn is_allowed_global(module: &str, name: &str) -> bool {
    match module {
        "collections" => name == "OrderedDict",
        "builtins" | "__builtin__" => matches!(name, "set" | "frozenset"),
        "torch._utils" => name.starts_with("_rebuild_"),
        "torch._tensor" => name == "_rebuild_from_type_v2",
        "torch.nn.parameter" => name == "Parameter",
        "torch" => {
            name.ends_with("Storage")
                || matches!(name, "Size" | "device" | "Tensor")
                || TORCH_DTYPES.contains(&name)
        }
        "numpy.core.multiarray" | "numpy._core.multiarray" => {
            matches!(name, "scalar" | "_reconstruct")
        }
        "numpy" => matches!(name, "dtype" | "ndarray"),
        "_codecs" => name == "encode",
        _ => false,
    }
}

const TORCH_DTYPES: [&str; 17] = [
    "float32",
    "float",
    "float16",
    "half",
    "bfloat16",
    "float64",
    "double",
    "int64",
    "long",
    "int32",
    "int",
    "int16",
    "short",
    "int8",
    "uint8",
    "bool",
    "complex64",
];

/// What the scan remembers of each stack push: the string pushed, or nothing.
type Pushed = Option<String>;

/// Walks the pickle's opcodes (never evaluating them) and fails on the first global outside
/// [`is_allowed_global`], on copyreg extension codes (which name globals indirectly) and on a
/// `STACK_GLOBAL` whose names are not plain strings pushed just before it.
pub fn check_pickle(bytes: &[u8]) -> std::result::Result<(), String> {
    let mut scan = Scan {
        bytes,
        at: 0,
        recent: Vec::new(),
        memo: std::collections::HashMap::new(),
    };
    while scan.at < bytes.len() {
        let op = bytes[scan.at];
        scan.at += 1;
        if op == b'.' {
            return Ok(());
        }
        scan.step(op)?;
    }
    Err("the pickle ends without its STOP opcode (truncated)".into())
}

struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
    /// The last two pushes, newest last (a non-string or unknown effect pushes `None`).
    recent: Vec<Pushed>,
    /// Every memo slot written, with its string if it holds one (`STACK_GLOBAL` names are
    /// often fetched back with `BINGET`).
    memo: std::collections::HashMap<u64, Pushed>,
}

impl Scan<'_> {
    fn step(&mut self, op: u8) -> std::result::Result<(), String> {
        match op {
            // GLOBAL and INST: "module\nname\n".
            b'c' | b'i' => {
                let module = self.line()?;
                let name = self.line()?;
                self.global(&module, &name)?;
                self.push(None);
            }
            0x93 => self.stack_global()?,
            0x82..=0x84 => {
                return Err(format!(
                    "uses a copyreg extension code (opcode {op:#04x}), which names a Python \
                     function indirectly; torch.save never writes one"
                ));
            }
            // Strings: remembered, STACK_GLOBAL's operands.
            b'X' | 0x8c | 0x8d | b'U' | b'T' => {
                let len = self.length(op)?;
                let text = String::from_utf8_lossy(self.take(len)?).into_owned();
                self.push(Some(text));
            }
            b'S' | b'V' => {
                let text = self.line()?;
                self.push(Some(text.trim_matches(['\'', '"']).to_string()));
            }
            // Memo writes leave the stack as it is.
            0x94 => self.remember(self.memo.len() as u64),
            b'q' => {
                let slot = u64::from(self.take(1)?[0]);
                self.remember(slot);
            }
            b'r' => {
                let slot = u64::from(u32::from_le_bytes(self.array()?));
                self.remember(slot);
            }
            b'p' => {
                let slot = self.line()?.parse().unwrap_or(u64::MAX);
                self.remember(slot);
            }
            b'h' => {
                let slot = u64::from(self.take(1)?[0]);
                self.push(self.memo.get(&slot).cloned().flatten());
            }
            b'j' => {
                let slot = u64::from(u32::from_le_bytes(self.array()?));
                self.push(self.memo.get(&slot).cloned().flatten());
            }
            b'g' => {
                let slot = self.line()?.parse().unwrap_or(u64::MAX);
                self.push(self.memo.get(&slot).cloned().flatten());
            }
            // PROTO and FRAME only describe the stream.
            0x80 => {
                self.take(1)?;
            }
            0x95 => {
                self.take(8)?;
            }
            _ => {
                self.skip_argument(op)?;
                self.push(None);
            }
        }
        Ok(())
    }

    fn global(&self, module: &str, name: &str) -> std::result::Result<(), String> {
        if is_allowed_global(module, name) {
            return Ok(());
        }
        Err(format!(
            "refers to the Python global `{}.{}`, which a PyTorch state dict never needs; such \
             a file is made to run code when loaded with torch.load. duoclip never runs code \
             from model files and refuses it. If the file is yours, save `model.state_dict()` \
             (or use safetensors)",
            module.escape_debug(),
            name.escape_debug()
        ))
    }

    fn stack_global(&mut self) -> std::result::Result<(), String> {
        let name = self.recent.pop().flatten();
        let module = self.recent.pop().flatten();
        match (module, name) {
            (Some(module), Some(name)) => self.global(&module, &name)?,
            _ => {
                return Err(
                    "has a STACK_GLOBAL whose names are computed rather than written out; \
                     torch.save never writes one"
                        .into(),
                );
            }
        }
        self.push(None);
        Ok(())
    }

    fn push(&mut self, item: Pushed) {
        if self.recent.len() == 2 {
            self.recent.remove(0);
        }
        self.recent.push(item);
    }

    fn remember(&mut self, slot: u64) {
        let top = self.recent.last().cloned().flatten();
        self.memo.insert(slot, top);
    }

    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or("the pickle is truncated inside an opcode's argument")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    fn line(&mut self) -> std::result::Result<String, String> {
        let rest = &self.bytes[self.at..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("the pickle is truncated inside a text argument")?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.at += end + 1;
        Ok(text)
    }

    /// The length prefix of a string or bytes opcode.
    fn length(&mut self, op: u8) -> std::result::Result<usize, String> {
        let len = match op {
            0x8c | b'U' | b'C' | 0x8a => u64::from(self.take(1)?[0]),
            0x8d | 0x8e | 0x96 => u64::from_le_bytes(self.array()?),
            _ => u64::from(u32::from_le_bytes(self.array()?)),
        };
        usize::try_from(len).map_err(|_| "a length prefix larger than memory".to_string())
    }

    /// Moves past the argument of any other opcode (see Python's `pickletools`).
    fn skip_argument(&mut self, op: u8) -> std::result::Result<(), String> {
        let fixed = match op {
            b'K' => 1,
            b'M' => 2,
            b'J' => 4,
            b'G' => 8,
            b'I' | b'L' | b'F' | b'P' => {
                self.line()?;
                0
            }
            b'C' | b'B' | 0x8e | 0x96 | 0x8a | 0x8b => {
                let len = self.length(op)?;
                self.take(len)?;
                0
            }
            b'('
            | b')'
            | b']'
            | b'}'
            | b'a'
            | b'e'
            | b's'
            | b'u'
            | b't'
            | 0x85..=0x87
            | b'R'
            | b'b'
            | b'0'
            | b'1'
            | b'2'
            | b'N'
            | 0x88
            | 0x89
            | b'Q'
            | 0x81
            | 0x92
            | 0x8f
            | 0x90
            | 0x91
            | b'd'
            | b'l'
            | b'o'
            | 0x97
            | 0x98 => 0,
            other => return Err(format!("unknown pickle opcode {other:#04x}")),
        };
        self.take(fixed)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // pickle.dumps(collections.OrderedDict(), protocol=2) and protocol 4 (STACK_GLOBAL).
    const ORDERED_DICT_P2: &[u8] = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01.";
    const ORDERED_DICT_P4: &[u8] =
        b"\x80\x04\x95\"\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94.";

    #[test]
    fn state_dict_globals_pass() {
        check_pickle(ORDERED_DICT_P2).unwrap();
        check_pickle(ORDERED_DICT_P4).unwrap();
    }

    #[test]
    fn os_system_is_refused_by_name_in_both_spellings() {
        // pickle.dumps of a __reduce__ to os.system, protocols 0 and 4.
        let p0 = b"cposix\nsystem\np0\n(Vtouch x\np1\ntp2\nRp3\n.";
        let p4 = b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94\x8c\x07touch x\x94\x85\x94R\x94.";
        for bytes in [&p0[..], &p4[..]] {
            let message = check_pickle(bytes).unwrap_err();
            assert!(message.contains("`posix.system`"), "{message}");
        }
    }

    #[test]
    fn computed_global_names_and_extensions_are_refused() {
        // Two strings, then a POP-free but non-string push in between: names not plain.
        let computed = b"\x80\x04\x8c\x02os\x94N\x93.";
        assert!(check_pickle(computed).unwrap_err().contains("computed"));
        let ext = b"\x80\x02\x82\x01.";
        assert!(check_pickle(ext).unwrap_err().contains("extension"));
    }

    #[test]
    fn memoized_names_are_followed() {
        // "posix" memoized at 0, "system" at 1, fetched back with BINGET for STACK_GLOBAL.
        let bytes = b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94h\x00h\x01\x93.";
        assert!(check_pickle(bytes).unwrap_err().contains("posix.system"));
    }

    #[test]
    fn truncation_is_an_error_not_a_panic() {
        for cut in 0..ORDERED_DICT_P4.len() - 1 {
            assert!(check_pickle(&ORDERED_DICT_P4[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn entry_names_that_climb_out_are_caught() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "C:\\x", "a\\..\\x"] {
            assert!(!is_inside_archive(bad), "{bad}");
        }
        for good in ["archive/data.pkl", "archive/data/0", "x/.data/version"] {
            assert!(is_inside_archive(good), "{good}");
        }
    }
}
