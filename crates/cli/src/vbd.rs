//! `xsio vbd`: VBD names to `virtual-device` numbers and back.

use std::io::Write;
use std::process::ExitCode;

use xsio_vbd::Vbd;

/// Arguments of `xsio vbd`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Treat the arguments as `virtual-device` numbers and print canonical names.
    #[arg(long)]
    number: bool,
    /// VBD names (xvda, hdc2, d536p37), or numbers with --number.
    #[arg(required = true, allow_hyphen_values = true)]
    items: Vec<String>,
}

/// Prints `ITEM<TAB>RESULT` per argument; exit status 1 if any was invalid.
pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut all_valid = true;
    for item in &args.items {
        let result = if args.number {
            translate_number(item)
        } else {
            Vbd::parse(item)
                .map(|vbd| vbd.number().to_string())
                .map_err(|e| e.to_string())
        };
        match result {
            Ok(value) => writeln!(out, "{item}\t{value}")?,
            Err(reason) => {
                all_valid = false;
                writeln!(out, "{item}\terror: {reason}")?;
            }
        }
    }
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn translate_number(item: &str) -> Result<String, String> {
    // Numbers are canonical decimal, as libxl writes them to xenstore.
    let canonical = !item.is_empty()
        && item.bytes().all(|b| b.is_ascii_digit())
        && (item == "0" || !item.starts_with('0'));
    if !canonical {
        return Err("not a decimal number".to_owned());
    }
    let number: u32 = item
        .parse()
        .map_err(|_| "number above 4294967295".to_owned())?;
    Vbd::from_number(number)
        .map(|vbd| vbd.to_string())
        .map_err(|e| e.to_string())
}
