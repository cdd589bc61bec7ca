//! Keys to `App` methods; nothing else. The actions returned are carried out
//! on the nodes by the runtime (`tui::run`).
//!
//! | key | does |
//! | --- | --- |
//! | `0`-`9`, Up, Down | select a node |
//! | `c` | crash the selected node (simulated: memory kept) |
//! | `k` | kill the selected node and restart it from its data directory (not under `--in-memory`: a short error instead) |
//! | `r` | restore the selected node |
//! | `a` | restore every node |
//! | `w` | write a demo file through the leader |
//! | `p` | isolate the selected node (cut it from every other); again: heal it |
//! | `l` then `0`-`9` | cut the link between the selected node and that one; again: heal it |
//! | `h` | heal every link |
//! | `q`, Esc, Ctrl-C | quit (every node is shut down) |
//!
//! After `l`, the next key is the other end of the link: a digit picks it,
//! any other key (Esc too) cancels and does nothing else; Ctrl-C still quits.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::tui::app::{Action, App};

pub fn handle_key(app: &mut App, key: KeyEvent) -> Option<Action> {
    // Terminals that report releases and repeats would act twice.
    if key.kind != KeyEventKind::Press {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        if matches!(key.code, KeyCode::Char('c') | KeyCode::Char('C')) {
            app.quit();
        }
        return None;
    }
    if app.link_from.is_some() {
        return match key.code {
            KeyCode::Char(d @ '0'..='9') => app.pick_link_peer(d as usize - '0' as usize),
            _ => {
                app.cancel_link();
                None
            }
        };
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => {
            app.quit();
            None
        }
        KeyCode::Char(d @ '0'..='9') => {
            app.select(d as usize - '0' as usize);
            None
        }
        KeyCode::Up => {
            app.select_previous();
            None
        }
        KeyCode::Down => {
            app.select_next();
            None
        }
        KeyCode::Char('c') => app.crash_selected(),
        KeyCode::Char('k') => app.kill_selected(),
        KeyCode::Char('r') => app.restore_selected(),
        KeyCode::Char('a') => app.restore_all(),
        KeyCode::Char('w') => app.write_demo(),
        KeyCode::Char('t') => app.transfer_to_selected(),
        KeyCode::Char('p') => app.isolate_selected(),
        KeyCode::Char('l') => {
            app.start_link();
            None
        }
        KeyCode::Char('h') => app.heal_all(),
        _ => None,
    }
}
