//! A sequence diagram of one run: a lane per party, time going down, an arrow per request
//! to xenstore and per answer or event back, state changes as notes.

use crate::trace::{Lane, Trace};

const LANE_WIDTH: usize = 230;
const ROW: usize = 16;
const TOP: usize = 60;
const LEFT: usize = 80;

/// The diagram as an SVG document, of at most `max_lines` trace lines (the rest is
/// summarised at the bottom).
pub fn render(title: &str, trace: &Trace, max_lines: usize) -> String {
    let lines = &trace.lines()[..trace.lines().len().min(max_lines)];
    // Room on the right for the notes of the rightmost lane.
    let width = LEFT + LANE_WIDTH * Lane::ALL.len() + 340;
    let height = TOP + ROW * (lines.len() + 3);
    let x = |lane: Lane| LEFT + LANE_WIDTH / 2 + LANE_WIDTH * lane as usize;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"monospace\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <defs><marker id=\"a\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" \
         markerHeight=\"6\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\"/></marker></defs>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
        escape(title)
    );
    for lane in Lane::ALL {
        let lx = x(lane);
        svg.push_str(&format!(
            "<text x=\"{lx}\" y=\"{}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\n\
             <line x1=\"{lx}\" y1=\"{}\" x2=\"{lx}\" y2=\"{}\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n",
            TOP - 14,
            lane.name(),
            TOP - 8,
            height - 10
        ));
    }
    for (row, line) in lines.iter().enumerate() {
        let y = TOP + ROW * row + ROW / 2;
        // The whole line, shown when hovering over the row.
        svg.push_str(&format!(
            "<g><title>{} ms {}: {}</title>\n<text x=\"6\" y=\"{}\" fill=\"#555\">{} ms</text>\n",
            line.t_ms,
            escape(&line.who),
            escape(&line.what),
            y + 4,
            line.t_ms
        ));
        let from = x(line.lane);
        let store = x(Lane::Xenstore);
        let what = escape(&shorten(&line.what, 44));
        let qemu = x(Lane::Qemu);
        let (x1, x2, color) = if line.what.starts_with("qmp ") {
            // The toolstack's QMP commands go to QEMU (orange), the answers come back.
            let answer = line.what.contains(": ok")
                || line.what.contains(" = ")
                || line.what.contains("failed")
                || line.what.starts_with("qmp connected");
            if answer {
                (qemu, from, "#bc4c00")
            } else {
                (from, qemu, "#bc4c00")
            }
        } else if line.lane == Lane::Qemu && line.what.starts_with("event ") {
            (qemu, x(Lane::Toolstack), "#bc4c00")
        } else if line.what.starts_with("read ") || line.what.starts_with("watch fired") {
            (store, from, "#1f6feb")
        } else if line.what.starts_with("write")
            || line.what.starts_with("watch ")
            || line.what.starts_with("unwatch")
        {
            (from, store, "#2da44e")
        } else {
            (from, from, "#8250df")
        };
        if x1 == x2 {
            svg.push_str(&format!(
                "<circle cx=\"{x1}\" cy=\"{y}\" r=\"3\" fill=\"{color}\"/>\n\
                 <text x=\"{}\" y=\"{}\" fill=\"{color}\">{}: {what}</text>\n",
                x1 + 6,
                y + 4,
                escape(&line.who)
            ));
        } else {
            let mid = x1.min(x2) + 4;
            svg.push_str(&format!(
                "<line x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"{color}\" marker-end=\"url(#a)\"/>\n\
                 <text x=\"{mid}\" y=\"{}\" fill=\"{color}\">{what}</text>\n",
                y - 3
            ));
        }
        svg.push_str("</g>\n");
    }
    if trace.lines().len() > lines.len() {
        svg.push_str(&format!(
            "<text x=\"10\" y=\"{}\">... {} more lines (see the text trace)</text>\n",
            height - 20,
            trace.lines().len() - lines.len()
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_becomes_a_row_and_text_is_escaped() {
        let mut trace = Trace::default();
        trace.push(
            0,
            Lane::Toolstack,
            "toolstack d1 xvda".into(),
            "add <xvda> & more".into(),
        );
        trace.push(
            1,
            Lane::Backend,
            "backend d1 xvda".into(),
            "write: state=2".into(),
        );
        trace.push(
            2,
            Lane::Frontend,
            "frontend d1 xvda".into(),
            "read /x = 4".into(),
        );
        let svg = render("t", &trace, 10);
        assert_eq!(svg.matches("<title>").count(), 3);
        assert!(svg.contains("add &lt;xvda&gt; &amp; more"));
        assert!(!svg.contains("<xvda>"));
        // A write goes to xenstore (green), a read comes back from it (blue).
        assert!(svg.contains("stroke=\"#2da44e\""));
        assert!(svg.contains("stroke=\"#1f6feb\""));
        // QMP: the command to QEMU's lane, the answer and QEMU's events back.
        trace.push(
            3,
            Lane::Toolstack,
            "toolstack d1 dm".into(),
            "qmp stop".into(),
        );
        trace.push(4, Lane::Qemu, "qemu d1".into(), "event STOP".into());
        let svg = render("t", &trace, 10);
        let toolstack = LEFT + LANE_WIDTH / 2;
        let qemu = toolstack + LANE_WIDTH * 4;
        assert!(svg.contains(&format!(
            "x1=\"{toolstack}\" y1=\"{}\" x2=\"{qemu}\"",
            TOP + ROW * 3 + ROW / 2
        )));
        assert!(svg.contains(&format!(
            "x1=\"{qemu}\" y1=\"{}\" x2=\"{toolstack}\"",
            TOP + ROW * 4 + ROW / 2
        )));
        let short = render("t", &trace, 1);
        assert!(short.contains("4 more lines"));
    }
}
