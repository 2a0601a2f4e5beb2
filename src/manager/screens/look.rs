//! How a slice status is drawn: a day's cell, its colour (also of the
//! status word in tables) and its word in the legend.

use crate::ledger::SliceStatus;
use crate::report::Style;
use ratatui::style::{Color, Style as Look};
use ratatui::text::Span;

/// How a status is drawn: a day's cell (fancy and `--plain`), its colour
/// (also of the status word in tables) and its word in the legend. One arm
/// per status: a new status is one more arm and one more legend entry.
pub(super) struct DayLook {
    fancy: &'static str,
    plain: &'static str,
    colour: Color,
    pub(super) word: &'static str,
}

pub(super) fn look_of(s: SliceStatus) -> DayLook {
    let (fancy, plain, colour, word) = match s {
        SliceStatus::Done => ("█", "#", Color::Green, "concluído"),
        SliceStatus::Failed => ("✗", "x", Color::Red, "falhou"),
        SliceStatus::Running => ("▶", ">", Color::Yellow, "em execução"),
        SliceStatus::Pending => ("·", ".", Color::Gray, "pendente"),
        SliceStatus::Open => ("◐", "o", Color::Cyan, "dia em aberto"),
    };
    DayLook {
        fancy,
        plain,
        colour,
        word,
    }
}

/// The day strip's legend, in this order.
pub(super) const LEGEND: [SliceStatus; 5] = [
    SliceStatus::Done,
    SliceStatus::Open,
    SliceStatus::Failed,
    SliceStatus::Running,
    SliceStatus::Pending,
];

/// The status word of a scrap or slice, coloured.
pub(super) fn status_look(s: SliceStatus) -> Look {
    Look::default().fg(look_of(s).colour)
}

/// The cell of one day: a symbol and a colour per status.
pub(super) fn cell(style: Style, s: SliceStatus) -> Span<'static> {
    let look = look_of(s);
    Span::styled(
        if style.plain { look.plain } else { look.fancy },
        Look::default().fg(look.colour),
    )
}
