//! The terminal while the manager is open: raw mode, the alternate screen,
//! and their undoing on every way out. [`Tui`]'s `Drop` restores on quit
//! and on error; a panic hook restores before the panic message is printed
//! (a panic on another thread leaves the screen to the main thread).

use crossterm::cursor::Show;
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::{Frame, Terminal};
use std::io::Stdout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// The terminal is in the manager's hands (raw mode, alternate screen).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// The terminal, restored when dropped.
pub struct Tui {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Tui {
    pub fn draw(&mut self, f: impl FnOnce(&mut Frame<'_>)) -> std::io::Result<()> {
        self.terminal.draw(f).map(|_| ())
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal in the manager's hands.
pub fn enter() -> std::io::Result<Tui> {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some("main") {
                restore();
            }
            previous(info);
        }));
    });
    ACTIVE.store(true, Ordering::SeqCst);
    let ready = enable_raw_mode()
        .and_then(|_| execute!(std::io::stdout(), EnterAlternateScreen))
        .and_then(|_| Terminal::new(CrosstermBackend::new(std::io::stdout())));
    match ready {
        Ok(terminal) => Ok(Tui { terminal }),
        Err(e) => {
            restore();
            Err(e)
        }
    }
}

/// Raw mode off, main screen back, cursor shown; once, and only when the
/// manager had the terminal. Errors are ignored: there is nothing better
/// to do with the terminal on the way out.
fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(std::io::stdout(), LeaveAlternateScreen, Show);
    }
}
