//! Sizes in bytes as people write and read them: `1.5GiB`, `800MB`, `2G`.

use crate::error::{Error, Result};

/// `1.5GiB`, `800MB`, `2G`, `4096`: KiB/MiB/GiB and bare K/M/G are powers of 1024,
/// KB/MB/GB powers of 1000, a bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64> {
    let bad = || {
        Error::Input(format!(
            "{text:?} is not a size (e.g. 1.5GiB, 800MB, 2G, 65536)"
        ))
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    const KIB: f64 = 1024.0;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "ki" | "kib" => KIB,
        "m" | "mi" | "mib" => KIB * KIB,
        "g" | "gi" | "gib" => KIB * KIB * KIB,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        _ => return Err(bad()),
    };
    let bytes = number * scale;
    if !bytes.is_finite() || bytes < 1.0 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// A size for people: `1.50 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    format!("{value:.2} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        let gib = 1u64 << 30;
        assert_eq!(parse_size("1.5GiB").unwrap(), gib + gib / 2);
        assert_eq!(parse_size("800MB").unwrap(), 800_000_000);
        assert_eq!(parse_size("2G").unwrap(), 2 * gib);
        assert_eq!(parse_size("512 MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("3kb").unwrap(), 3000);
        for bad in ["", "GiB", "1.5XB", "-1G", "0", "1..5G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_format_for_people() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(3 << 29), "1.50 GiB");
    }
}
