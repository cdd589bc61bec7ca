//! Entering and leaving the dashboard's terminal mode (raw mode, alternate
//! screen, hidden cursor), so that every way out restores the terminal: a
//! normal return, an early error (the guard's `Drop`), and a panic anywhere in
//! the process (the hook restores, prints the panic, and exits: a node task
//! panicking would otherwise leave the dashboard drawing over a cooked shell).

use std::io::{self, Stdout};

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

pub type Tui = Terminal<CrosstermBackend<Stdout>>;

/// The terminal in dashboard mode; dropping it restores the terminal.
pub struct TerminalGuard {
    pub terminal: Tui,
}

/// Switches the terminal to dashboard mode and installs the panic hook.
pub fn enter() -> io::Result<TerminalGuard> {
    install_panic_hook();
    enable_raw_mode()?;
    if let Err(e) = execute!(io::stdout(), EnterAlternateScreen, Hide) {
        let _ = restore();
        return Err(e);
    }
    match Terminal::new(CrosstermBackend::new(io::stdout())) {
        Ok(terminal) => Ok(TerminalGuard { terminal }),
        Err(e) => {
            let _ = restore();
            Err(e)
        }
    }
}

/// Leaves dashboard mode; harmless when not in it.
pub fn restore() -> io::Result<()> {
    let raw = disable_raw_mode();
    let screen = execute!(io::stdout(), LeaveAlternateScreen, Show);
    raw.and(screen)
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = restore();
    }
}

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = restore();
        previous(info);
        std::process::exit(101);
    }));
}
