//! `lfm-edge trace`: the debug mode's command. Writes each named intermediate of one
//! forward pass as `<name>.npy` and, given a folder of HF's arrays under the same
//! names (scripts/make_fixtures.py's `trace`), prints how far each one is from them:
//! the first layer whose error jumps is where to look.

use std::path::Path;

use lfm_edge::{npy, Error, Result};

use super::ids;
use super::model::ModelArgs;

pub fn run(args: &ModelArgs, tokens: &str, out: &Path, reference: Option<&Path>) -> Result<()> {
    let tokens = &ids::parse(tokens)?;
    if let Some(dir) = reference.filter(|dir| !dir.is_dir()) {
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder");
        return Err(Error::io(dir, missing));
    }
    let model = args.load()?;
    let trace = args.session(&model, false)?.trace(tokens)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let n = tokens.len();
    for intermediate in &trace.intermediates {
        let name = &intermediate.name;
        let values = &intermediate.values;
        let hidden = values.len() / n;
        npy::write_f32(&out.join(format!("{name}.npy")), n, hidden, values)?;
        let Some(reference) = reference else {
            outln!("{name}")?;
            continue;
        };
        let path = reference.join(format!("{name}.npy"));
        if !path.exists() {
            outln!("{name}: no {}", path.display())?;
            continue;
        }
        let (shape, want) = npy::read_f32(&path)?;
        if shape != [n, hidden] {
            return Err(Error::Input(format!(
                "{}: shape {shape:?}, expected [{n}, {hidden}]",
                path.display()
            )));
        }
        // A NaN anywhere shows as NaN (f32::max would drop it).
        let max_abs = |v: &[f32]| {
            v.iter().fold(0f32, |m, x| {
                if m.is_nan() || x.is_nan() {
                    f32::NAN
                } else {
                    m.max(x.abs())
                }
            })
        };
        let diff: Vec<f32> = values.iter().zip(&want).map(|(a, b)| a - b).collect();
        outln!(
            "{name}: max abs diff {:.3e} (max |reference| {:.3e})",
            max_abs(&diff),
            max_abs(&want)
        )?;
    }
    Ok(())
}
