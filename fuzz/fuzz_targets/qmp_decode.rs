//! Any bytes: framing and decoding never panic, any split of the stream gives the same
//! messages (invariant I7), and after a framing error the framer refuses everything.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xsio_qmp::wire::{Framer, decode};

/// Frames and decodes `chunks` in order. After a framing error the framer must refuse every
/// later chunk with that same error, consuming it.
fn run(chunks: &[&[u8]]) -> Vec<String> {
    let mut framer = Framer::new(4096);
    let mut out = Vec::new();
    let mut failed = None;
    for chunk in chunks {
        let mut input = *chunk;
        if let Some(error) = &failed {
            assert_eq!(framer.next_frame(&mut input).as_ref().err(), Some(error), "poisoned");
            assert!(input.is_empty(), "a poisoned framer consumes its input");
            continue;
        }
        loop {
            match framer.next_frame(&mut input) {
                Ok(Some(frame)) => out.push(format!("{:?}", decode(&frame))),
                Ok(None) => break,
                Err(e) => {
                    out.push(format!("framing error {e:?}"));
                    failed = Some(e);
                    break;
                }
            }
        }
        assert!(framer.pending_len() <= 4096, "I4: the carry-over stays bounded");
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let whole = run(&[stream]);
    let step = usize::from(step).max(1);
    let chunks: Vec<&[u8]> = stream.chunks(step).collect();
    assert_eq!(run(&chunks), whole, "I7: chunks of {step} bytes");
});
