//! The dashboard without a terminal: `ui::render` drawn on ratatui's
//! `TestBackend` and checked cell by cell, and key handling checked on the
//! `App` state and the actions it returns. Partition keys are carried out on
//! a real `Partition` (the filter `run-cluster.sh` shares among its nodes),
//! as the runtime does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use ratatui::Terminal;

use surfstore::cluster::FeedItem;
use surfstore::node::driver::LogLine;
use surfstore::node::events::{EventKind, NodeEvent};
use surfstore::node::peers::Partition;
use surfstore::node::raft::{PeerProgress, Role, Status};
use surfstore::node::NodeStatus;
use surfstore::tui::app::{Action, App, NetAction, NodeView, Tone};
use surfstore::tui::handler::handle_key;
use surfstore::tui::{text, ui};

/// A leader's progress for each follower: (id, match index, next index).
fn progress(rows: &[(u64, u64, u64)]) -> Vec<PeerProgress> {
    rows.iter()
        .map(|&(id, match_index, next_index)| PeerProgress {
            id,
            match_index,
            next_index,
        })
        .collect()
}

fn status(id: u64, role: Role, term: u64, last: u64, crashed: bool) -> NodeStatus {
    NodeStatus {
        raft: Status {
            id,
            role,
            term,
            vote: Some(0),
            leader: Some(0),
            last_index: last,
            last_term: term,
            snapshot_index: 0,
            commit_index: last.saturating_sub(1),
            applied_index: last.saturating_sub(1),
            transferee: None,
            progress: Vec::new(),
        },
        crashed,
        files: last as usize,
        failed: None,
    }
}

/// Node 0 leads in term 42 and has node 2 five entries behind; node 1 is
/// crashed in term 41; node 2 follows.
fn three_nodes() -> App {
    let mut leader = status(0, Role::Leader, 42, 10, false);
    leader.raft.progress = progress(&[(1, 3, 4), (2, 5, 6)]);
    let nodes = vec![
        NodeView {
            addr: "localhost:9001".into(),
            status: leader,
        },
        NodeView {
            addr: "localhost:9002".into(),
            status: status(1, Role::Follower, 41, 3, true),
        },
        NodeView {
            addr: "localhost:9003".into(),
            status: status(2, Role::Follower, 42, 5, false),
        },
    ];
    App::new("3nodes.txt", nodes)
}

fn at(ms: u64) -> SystemTime {
    // 13:05:07.042 UTC on some day.
    UNIX_EPOCH + Duration::from_millis(86_400_000 * 20_000 + 47_107_042 + ms)
}

fn event(node: u64, ms: u64, kind: EventKind) -> NodeEvent {
    NodeEvent {
        node,
        at: at(ms),
        kind,
    }
}

fn draw(app: &App, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| ui::render(app, f)).unwrap();
    terminal.backend().buffer().clone()
}

fn lines(buf: &Buffer) -> Vec<String> {
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

fn screen(buf: &Buffer) -> String {
    lines(buf).join("\n")
}

/// The screen line that contains `needle`, and its row.
fn line_with(buf: &Buffer, needle: &str) -> (u16, String) {
    lines(buf)
        .into_iter()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .map(|(y, l)| (y as u16, l))
        .unwrap_or_else(|| panic!("no line contains {needle:?}:\n{}", screen(buf)))
}

/// The cell where `needle` starts on row `y`.
fn cell_of<'a>(buf: &'a Buffer, y: u16, needle: &str) -> &'a ratatui::buffer::Cell {
    let line = lines(buf)[y as usize].clone();
    let byte = line.find(needle).unwrap();
    let x = line[..byte].chars().count() as u16;
    &buf[(x, y)]
}

mod render {
    use super::*;

    #[test]
    fn a_node_stopped_by_a_failed_disk_write_shows_failed() {
        let mut app = three_nodes();
        app.nodes[2].status.failed = Some("writing the log failed: disk full".into());
        let buf = draw(&app, 80, 24);
        let (y2, row2) = line_with(&buf, "localhost:9003");
        assert!(row2.contains("FAILED"), "{row2}");
        assert_eq!(cell_of(&buf, y2, "FAILED").bg, Color::Red);
    }

    #[test]
    fn the_node_table_shows_roles_terms_indexes_and_the_selection() {
        let mut app = three_nodes();
        app.select(2);
        let buf = draw(&app, 80, 24);

        let (y0, row0) = line_with(&buf, "localhost:9001");
        assert!(row0.contains("Leader") && row0.contains("42"), "{row0}");
        assert!(
            row0.contains(" 10 ") && row0.contains(" 9 "),
            "last and commit: {row0}"
        );
        assert_eq!(cell_of(&buf, y0, "Leader").fg, Color::Green);

        let (y1, row1) = line_with(&buf, "localhost:9002");
        assert!(row1.contains("CRASHED") && row1.contains("41"), "{row1}");
        assert_eq!(cell_of(&buf, y1, "CRASHED").bg, Color::Red);

        let (_, row2) = line_with(&buf, "localhost:9003");
        assert!(row2.contains("Follower"), "{row2}");
        assert!(
            row2.contains(ui::SELECTED_MARKER.trim()),
            "selected: {row2}"
        );
        assert!(
            !row0.contains(ui::SELECTED_MARKER.trim()),
            "not selected: {row0}"
        );

        let title = &lines(&buf)[0];
        assert!(title.contains("leader: node 0 (term 42)"), "{title}");
        let (_, header) = line_with(&buf, "address");
        for column in [
            "id", "role", "term", "vote", "last", "commit", "applied", "snap", "files",
        ] {
            assert!(header.contains(column), "{column} missing from {header}");
        }
    }

    /// The text of row `y` under the header `title` (as wide as the title).
    fn under(buf: &Buffer, y: u16, title: &str) -> String {
        let (_, header) = line_with(buf, "address");
        let byte = header.find(title).unwrap();
        let x = header[..byte].chars().count();
        lines(buf)[y as usize]
            .chars()
            .skip(x)
            .take(title.len().max(5))
            .collect::<String>()
            .trim()
            .to_owned()
    }

    #[test]
    fn the_node_table_shows_each_nodes_snapshot_index() {
        let mut app = three_nodes();
        let mut compacted = status(2, Role::Follower, 42, 12345, false);
        compacted.raft.snapshot_index = 12000;
        compacted.files = 777;
        app.set_status(2, compacted);
        let buf = draw(&app, 80, 24);
        let (y0, _) = line_with(&buf, "localhost:9001");
        let (y2, row2) = line_with(&buf, "localhost:9003");
        assert_eq!(under(&buf, y2, "snap"), "12000", "{row2}");
        assert_eq!(under(&buf, y0, "snap"), "-", "never compacted");
        // The columns after it still fit on an 80-column screen.
        assert_eq!(under(&buf, y2, "files"), "777", "{row2}");
        assert_eq!(under(&buf, y2, "last"), "12345", "{row2}");
        assert_eq!(under(&buf, y2, "applied"), "12344", "{row2}");
    }

    #[test]
    fn the_node_table_columns_fit_in_the_minimum_width() {
        let width = |c: &ui::Column| match c.width {
            ratatui::layout::Constraint::Length(n) => n,
            other => panic!("{}: {other:?} is not a fixed width", c.title),
        };
        for c in ui::COLUMNS {
            assert!(width(c) >= c.title.len() as u16, "{} is cut", c.title);
        }
        let widths: u16 = ui::COLUMNS.iter().map(width).sum();
        let spacing = ui::COLUMNS.len() as u16 - 1;
        let marker = ui::SELECTED_MARKER.chars().count() as u16;
        assert!(
            widths + spacing + marker + 2 <= ui::MIN_WIDTH,
            "{widths} + {spacing} spaces + {marker} marker + 2 borders > {}",
            ui::MIN_WIDTH
        );
    }

    #[test]
    fn a_candidate_has_its_own_colour() {
        let mut app = three_nodes();
        app.set_status(2, status(2, Role::Candidate, 43, 5, false));
        let buf = draw(&app, 80, 24);
        let (y, row) = line_with(&buf, "localhost:9003");
        assert!(row.contains("Candidate") && row.contains("43"), "{row}");
        assert_eq!(cell_of(&buf, y, "Candidate").fg, Color::Yellow);
    }

    #[test]
    fn replication_progress_shows_match_index_and_lag_per_follower() {
        let buf = draw(&three_nodes(), 80, 24);
        let (_, title) = line_with(&buf, "Replication (leader 0,");
        assert!(title.contains("last #10"), "{title}");
        let (_, crashed) = line_with(&buf, "node 1 ");
        assert!(
            crashed.contains('3') && crashed.contains("CRASHED"),
            "{crashed}"
        );
        let (y, behind) = line_with(&buf, "node 2 ");
        assert!(behind.contains('5') && behind.contains("lag 5"), "{behind}");
        // Half the bar is filled.
        let filled = behind.matches('█').count();
        let empty = behind.matches('░').count();
        assert!(filled > 0 && filled.abs_diff(empty) <= 1, "{behind}");
        assert_eq!(cell_of(&buf, y, "█").fg, Color::Yellow);
    }

    #[test]
    fn a_crashed_follower_shows_the_log_it_holds_not_zero() {
        // Node 0 became leader of term 43 after node 1 crashed: it never
        // heard from node 1, so its own match index for it is 0, but node 1
        // holds 4000 entries, 3998 of them committed.
        let mut app = three_nodes();
        let mut leader = status(0, Role::Leader, 43, 4242, false);
        leader.raft.progress = progress(&[(1, 0, 4001), (2, 4242, 4243)]);
        app.set_status(0, leader);
        let mut crashed = status(1, Role::Follower, 42, 4000, true);
        crashed.raft.commit_index = 3998;
        app.set_status(1, crashed);
        app.set_status(2, status(2, Role::Follower, 43, 4242, false));
        let buf = draw(&app, 80, 24);
        let (y, l) = line_with(&buf, "node 1 ");
        // Its last entry is of term 42, not the leader's term 43: only its
        // committed entries are known to agree with the leader's log.
        assert!(l.contains(" 3998 CRASHED"), "{l}");
        assert!(!l.contains(" 0 CRASHED"), "{l}");
        let filled = l.matches('█').count();
        let empty = l.matches('░').count();
        assert!(filled > 0 && filled > 5 * empty, "most of the bar: {l}");
        assert_eq!(cell_of(&buf, y, "█").fg, Color::Red);
        let (_, l) = line_with(&buf, "node 2 ");
        assert!(l.contains(" 4242 lag 0"), "{l}");

        // Crashed in the leader's own term, everything it holds matches:
        // only that leader made entries of its term.
        let mut crashed = status(1, Role::Follower, 43, 4100, true);
        crashed.raft.commit_index = 3998;
        app.set_status(1, crashed);
        let (_, l) = line_with(&draw(&app, 80, 24), "node 1 ");
        assert!(l.contains(" 4100 CRASHED"), "{l}");

        // The leader's own view wins when it knows more, and nothing counts
        // past the leader's last index.
        app.nodes[0].status.raft.progress[0].match_index = 4200;
        let (_, l) = line_with(&draw(&app, 80, 24), "node 1 ");
        assert!(l.contains(" 4200 CRASHED"), "{l}");
        app.nodes[0].status.raft.progress[0].match_index = 0;
        app.set_status(1, status(1, Role::Follower, 43, 9999, true));
        let (_, l) = line_with(&draw(&app, 80, 24), "node 1 ");
        assert!(l.contains(" 4242 CRASHED"), "{l}");
    }

    /// A cluster some minutes into a run-tester load: long file names in
    /// the log and the events, a crashed follower, a long config name, an
    /// address wider than its column.
    fn busy_dashboard() -> App {
        let mut leader = status(0, Role::Leader, 43, 4242, false);
        leader.raft.snapshot_index = 4000;
        leader.files = 1234;
        leader.raft.progress = progress(&[(1, 0, 4001), (2, 4240, 4243)]);
        let mut crashed = status(1, Role::Follower, 42, 4000, true);
        crashed.raft.commit_index = 3998;
        crashed.raft.applied_index = 3998;
        let nodes = vec![
            NodeView {
                addr: "localhost:9001".into(),
                status: leader,
            },
            NodeView {
                addr: "localhost:9002".into(),
                status: crashed,
            },
            NodeView {
                addr: "metadata-2.storage.example.org:9003".into(),
                status: status(2, Role::Follower, 43, 4242, false),
            },
        ];
        let mut app = App::new(
            "a-config-with-a-rather-long-name-for-this-cluster.txt",
            nodes,
        );
        let file = |i: u64| format!("tester-42-18ed6b0c9f3a-{i:x}-linux-x86_64-release.txt");
        app.set_log_tail(
            0,
            (4242, 43),
            (4237..=4242)
                .map(|i| LogLine {
                    index: i,
                    term: 43,
                    command: format!("updatefile {:?} v{} (1 hash)", file(i), i % 7 + 1),
                })
                .collect(),
        );
        app.push_event(event(1, 0, EventKind::Crashed));
        app.push_event(event(0, 1, EventKind::QuorumLost { term: 42 }));
        for i in 0..12 {
            app.push_event(event(2, 2 + i, EventKind::PreVoteStarted { term: 43 }));
        }
        app.push_event(event(0, 20, EventKind::LeaderElected { term: 43 }));
        app.push_event(event(
            0,
            21,
            EventKind::Committed {
                index: 4242,
                term: 43,
                what: format!("updatefile {:?} v3 (2 hashes) -> applied", file(4242)),
            },
        ));
        app.push_event(event(
            0,
            22,
            EventKind::Committed {
                index: 4243,
                term: 43,
                what: "updatefile \"a-file-name-far-too-long-for-any-line-of-the-events-pane-to-hold-whole.txt\" v1 (1 hash) -> applied".into(),
            },
        ));
        app
    }

    /// The whole 80x24 screen of `busy_dashboard`, cell by cell.
    const BUSY_80X24: [&str; 24] = [
        " SurfStore-on-Raft · 3 nodes · leader: node 0 (term 43) · a-config-with-a-rathe…",
        "┌ Nodes ───────────────────────────────────────────────────────────────────────┐",
        "│  id address             role      term  vote last  commit applied snap  files│",
        "│▶ 0  localhost:9001      Leader    43    0    4242  4241   4241    4000  1234 │",
        "│  1  localhost:9002      CRASHED   42    0    4000  3998   3998    -     4000 │",
        "│  2  metadata-2.storage… Follower  43    0    4242  4241   4241    -     4242 │",
        "└──────────────────────────────────────────────────────────────────────────────┘",
        "┌ Replication (last #4242) ────────┐┌ Log of node 0 (commit #4241) ────────────┐",
        "│node 1 ███████████░  3998 CRASHED ││#4239 t43 updatefile \"tester-42-18ed6b0c9…│",
        "│node 2 ████████████  4242 lag 0   ││#4240 t43 updatefile \"tester-42-18ed6b0c9…│",
        "│                                  ││#4241 t43 updatefile \"tester-42-18ed6b0c9…│",
        "│                                  ││#4242 t43 updatefile \"tester-42-18ed6b0c9…│",
        "└──────────────────────────────────┘└──────────────────────────────────────────┘",
        "┌ Events (UTC, newest last) ───────────────────────────────────────────────────┐",
        "│13:05:07.055 node 2  asking for pre-votes for term 43 (×12)                   │",
        "│13:05:07.062 node 0  became leader of term 43                                 │",
        "│13:05:07.063 node 0  committed #4242 (term 43): updatefile                    │",
        "│                     \"tester-42-18ed6b0c9f3a-1092-linux-x86_64-release.txt\" v3│",
        "│                     (2 hashes) -> applied                                    │",
        "│13:05:07.064 node 0  committed #4243 (term 43): updatefile \"a-file-name-far-t…│",
        "│                     v1 (1 hash) -> applied                                   │",
        "└──────────────────────────────────────────────────────────────────────────────┘",
        " 0-2 ↑↓ select  c crash  k kill  r restore  a restore all  w write  t lead      ",
        " p isolate  l 0-2 cut link  h heal all  q quit                                  ",
    ];

    #[test]
    fn the_80x24_layout_cell_by_cell_with_long_names_cut_by_ellipses() {
        let buf = draw(&busy_dashboard(), 80, 24);
        let got = lines(&buf);
        assert_eq!(got.len(), BUSY_80X24.len(), "rows:\n{}", screen(&buf));
        for (y, want) in BUSY_80X24.iter().enumerate() {
            let want: Vec<char> = want.chars().collect();
            assert_eq!(want.len(), 80, "expected row {y} is not 80 cells wide");
            for (x, &c) in want.iter().enumerate() {
                let cell = buf[(x as u16, y as u16)].symbol();
                assert!(
                    cell.chars().eq(std::iter::once(c)),
                    "cell ({x}, {y}) is {cell:?}, expected {c:?}\nexpected row {y}: {}\nactual row {y}:   {}\nactual screen:\n{}",
                    BUSY_80X24[y],
                    got[y],
                    screen(&buf)
                );
            }
        }
        // Colours where they carry meaning.
        let (y, _) = line_with(&buf, "localhost:9002");
        assert_eq!(cell_of(&buf, y, "CRASHED").bg, Color::Red);
        let (y, _) = line_with(&buf, "node 1 ");
        assert_eq!(cell_of(&buf, y, "█").fg, Color::Red);
    }

    /// Every event line on an 80x24 screen ends with a whole word of its
    /// event, or with `…`; none is cut silently.
    #[test]
    fn event_lines_never_end_mid_word_at_80x24() {
        let app = busy_dashboard();
        let buf = draw(&app, 80, 24);
        let words: std::collections::HashSet<String> = app
            .events
            .iter()
            .flat_map(|e| {
                let text = format!("{} (×{})", e.text, e.repeats);
                text.split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        let (top, _) = line_with(&buf, "Events");
        let mut checked = 0;
        for l in &lines(&buf)[top as usize + 1..] {
            if l.contains('└') {
                break;
            }
            let body: String = l.chars().skip(1 + 21).take(78 - 21).collect();
            for w in body.split_whitespace() {
                assert!(
                    words.contains(w) || w.ends_with('…'),
                    "{w:?} is cut silently in {l:?}\n{}",
                    screen(&buf)
                );
                checked += 1;
            }
        }
        assert!(checked > 20, "{}", screen(&buf));
    }

    #[test]
    fn without_a_leader_the_replication_panel_says_so() {
        let mut app = three_nodes();
        app.set_status(0, status(0, Role::Candidate, 43, 10, false));
        let buf = draw(&app, 80, 24);
        assert!(screen(&buf).contains("no leader"), "{}", screen(&buf));
    }

    #[test]
    fn event_lines_have_timestamps_nodes_and_what_happened() {
        let mut app = three_nodes();
        app.push_event(event(2, 0, EventKind::ElectionStarted { term: 42 }));
        app.push_event(event(
            1,
            1,
            EventKind::VoteGranted {
                candidate: 2,
                term: 42,
            },
        ));
        app.push_event(event(2, 2, EventKind::LeaderElected { term: 42 }));
        app.push_feed(FeedItem::Event(event(
            2,
            3,
            EventKind::Committed {
                index: 7,
                term: 42,
                what: "updatefile \"notes.txt\" v3 (2 hashes) -> applied".into(),
            },
        )));
        app.push_event(event(1, 4, EventKind::Crashed));
        app.push_event(event(2, 5, EventKind::Blocked { waiting: 2 }));
        app.push_event(event(2, 6, EventKind::LeadershipLost { term: 42 }));
        app.push_event(event(1, 7, EventKind::Restored));
        let buf = draw(&app, 100, 30);

        let (_, l) = line_with(&buf, "election started for term 42");
        assert!(l.contains("13:05:07.042") && l.contains("node 2"), "{l}");
        let (_, l) = line_with(&buf, "voted for node 2 in term 42");
        assert!(l.contains("13:05:07.043") && l.contains("node 1"), "{l}");
        line_with(&buf, "became leader of term 42");
        let (y, l) = line_with(&buf, "committed #7");
        assert!(l.contains("notes.txt"), "{l}");
        assert_eq!(cell_of(&buf, y, "committed").fg, Color::Cyan);
        let (y, _) = line_with(&buf, "13:05:07.046 node 1");
        assert_eq!(cell_of(&buf, y, "crashed").fg, Color::Red);
        line_with(&buf, "2 call(s) blocked waiting for a majority");
        line_with(&buf, "lost leadership (term 42)");
        line_with(&buf, "restored");
    }

    #[test]
    fn the_event_log_scrolls_to_the_newest() {
        let mut app = three_nodes();
        for i in 0..200 {
            app.push_event(event(0, i, EventKind::ElectionStarted { term: 1000 + i }));
        }
        let text = screen(&draw(&app, 80, 24));
        assert!(text.contains("term 1199"), "{text}");
        assert!(!text.contains("term 1000 "), "{text}");
    }

    #[test]
    fn the_log_tail_of_the_selected_node_is_shown() {
        let mut app = three_nodes();
        app.select(2);
        assert_eq!(app.log_tail_wanted(), Some(2));
        let lines_ = vec![
            LogLine {
                index: 4,
                term: 42,
                command: "updatefile \"a.txt\" v1 (1 hash)".into(),
            },
            LogLine {
                index: 5,
                term: 42,
                command: "updatefile \"b.txt\" v1 (1 hash)".into(),
            },
        ];
        app.set_log_tail(2, (5, 42), lines_);
        assert_eq!(app.log_tail_wanted(), None);
        let buf = draw(&app, 80, 24);
        line_with(&buf, "Log of node 2");
        let (_, l) = line_with(&buf, "a.txt");
        assert!(l.contains("#4"), "{l}");
        assert!(l.contains("t42") && l.contains("a.txt"), "{l}");
        // Entry 5 is past node 2's commit index (4): not yet committed.
        let (y, _) = line_with(&buf, "b.txt");
        assert_eq!(cell_of(&buf, y, "updatefile \"b.txt").fg, Color::Yellow);
    }

    pub(super) const EVERY_KEY: &[&str] = &[
        "0-2",
        "↑↓",
        "c crash",
        "k kill",
        "r restore",
        "a restore all",
        "w write",
        "t lead",
        "p isolate",
        "l 0-2 cut link",
        "h heal all",
        "q quit",
    ];

    #[test]
    fn the_help_line_names_every_key() {
        // Two lines at 80 columns, "q quit" on the last.
        let buf = draw(&three_nodes(), 80, 24);
        let help = format!("{}\n{}", lines(&buf)[22], lines(&buf)[23]);
        for key in EVERY_KEY {
            assert!(help.contains(key), "{key} missing from {help}");
        }
        assert!(lines(&buf)[23].contains("q quit"), "{help}");
        assert!(
            lines(&buf)[21].contains('└'),
            "the events pane ends above: {help}"
        );
        // One line where there is room.
        let buf = draw(&three_nodes(), 121, 30);
        let help = lines(&buf)[29].clone();
        for key in EVERY_KEY {
            assert!(help.contains(key), "{key} missing from {help}");
        }
        assert!(lines(&buf)[28].contains('└'), "{help}");
    }

    #[test]
    fn long_event_lines_wrap_and_the_quorum_and_pre_vote_events_read_whole() {
        let mut app = three_nodes();
        app.push_event(event(0, 0, EventKind::QuorumLost { term: 42 }));
        app.push_event(event(0, 1, EventKind::LeadershipLost { term: 42 }));
        app.push_event(event(0, 2, EventKind::PreVoteStarted { term: 43 }));
        app.push_event(event(0, 3, EventKind::PreVoteRefused { term: 43 }));
        let buf = draw(&app, 80, 24);
        let text = screen(&buf);
        // The step-down is longer than the pane: its end is on the next
        // line, under the text, not cut off at the border.
        let (y, first) = line_with(&buf, "13:05:07.042 node 0");
        assert!(
            first.contains("no majority heard for an election"),
            "{text}"
        );
        let next = &lines(&buf)[y as usize + 1];
        assert!(
            next.contains("(term 42)") && !next.contains("13:05"),
            "{text}"
        );
        let body = |l: &str| l.trim_matches(|c| c == '│' || c == ' ').to_owned();
        let joined = format!("{} {}", body(&first), body(next));
        assert!(
            joined.contains(&EventKind::QuorumLost { term: 42 }.to_string()),
            "{joined}"
        );
        assert_eq!(
            cell_of(&buf, y, "no majority").fg,
            Color::Magenta,
            "a leadership loss"
        );
        let (y, _) = line_with(&buf, "pre-vote for term 43 refused: term unchanged");
        assert_eq!(
            cell_of(&buf, y, "pre-vote").fg,
            Color::Yellow,
            "an election"
        );
        line_with(&buf, "asking for pre-votes for term 43");
        line_with(&buf, "lost leadership (term 42)");
    }

    #[test]
    fn a_line_repeated_in_a_row_is_shown_once_with_its_count() {
        let mut app = three_nodes();
        app.push_event(event(2, 0, EventKind::Crashed));
        // An isolated node asks for pre-votes every election timeout.
        for i in 0..12 {
            app.push_event(event(1, 1 + i, EventKind::PreVoteStarted { term: 42 }));
        }
        assert_eq!(app.events.len(), 2);
        assert_eq!(app.events.back().unwrap().repeats, 12);
        let text = screen(&draw(&app, 80, 24));
        assert_eq!(text.matches("asking for pre-votes").count(), 1, "{text}");
        let buf = draw(&app, 80, 24);
        let (_, l) = line_with(&buf, "asking for pre-votes for term 42 (×12)");
        assert!(l.contains("13:05:07.054"), "the last time: {l}");
        // Another line in between starts a new count.
        app.push_event(event(2, 20, EventKind::Restored));
        app.push_event(event(1, 21, EventKind::PreVoteStarted { term: 42 }));
        assert_eq!(app.events.len(), 4);
        assert_eq!(app.events.back().unwrap().repeats, 1);
    }

    #[test]
    fn below_80x24_a_message_replaces_the_dashboard() {
        for (w, h) in [(79, 24), (80, 23), (40, 10), (20, 3)] {
            let text = screen(&draw(&three_nodes(), w, h));
            assert!(!text.contains("Nodes"), "{w}x{h}: {text}");
            let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if w >= 60 {
                assert!(
                    flat.contains(&format!(
                        "terminal too small: need at least 80x24 (now {w}x{h})"
                    )),
                    "{w}x{h}: {text}"
                );
            } else {
                assert!(flat.contains("terminal too small"), "{w}x{h}: {text}");
            }
        }
        // Growing back brings the dashboard back.
        assert!(screen(&draw(&three_nodes(), 80, 24)).contains("Nodes"));
    }

    #[test]
    fn large_screens_and_many_nodes_fit() {
        let nodes = (0..7)
            .map(|i| NodeView {
                addr: format!("node-{i}.example:{}", 9001 + i),
                status: status(i, Role::Follower, 3, 1, false),
            })
            .collect();
        let mut app = App::new("7nodes.txt", nodes);
        app.select(6);
        for (w, h) in [(80, 24), (120, 40), (250, 80)] {
            let buf = draw(&app, w, h);
            // The selected row is always visible, even when the table scrolls.
            let (_, row) = line_with(&buf, "node-6.example:9007");
            assert!(row.contains(ui::SELECTED_MARKER.trim()), "{w}x{h}: {row}");
            assert!(lines(&buf)[h as usize - 1].contains("q quit"), "{w}x{h}");
            line_with(&buf, "Events");
        }
    }
}

mod keys {
    use super::render::EVERY_KEY;
    use super::*;

    fn press(app: &mut App, code: KeyCode) -> Option<Action> {
        handle_key(app, KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn digits_and_arrows_select_a_node() {
        let mut app = three_nodes();
        assert_eq!(app.selected, 0);
        press(&mut app, KeyCode::Char('2'));
        assert_eq!(app.selected, 2);
        press(&mut app, KeyCode::Char('7')); // no node 7
        assert_eq!(app.selected, 2);
        press(&mut app, KeyCode::Down); // wraps
        assert_eq!(app.selected, 0);
        press(&mut app, KeyCode::Up);
        assert_eq!(app.selected, 2);
        press(&mut app, KeyCode::Up);
        assert_eq!(app.selected, 1);
    }

    #[test]
    fn t_hands_leadership_from_the_leader_to_the_selected_node() {
        let mut app = three_nodes();
        press(&mut app, KeyCode::Char('2'));
        assert_eq!(
            press(&mut app, KeyCode::Char('t')),
            Some(Action::Transfer { from: 0, to: 2 })
        );
        press(&mut app, KeyCode::Char('0'));
        assert_eq!(press(&mut app, KeyCode::Char('t')), None, "0 already leads");
        assert!(app.events.back().unwrap().text.contains("already leads"));
        press(&mut app, KeyCode::Char('1'));
        assert_eq!(press(&mut app, KeyCode::Char('t')), None, "1 is crashed");
        assert!(app.events.back().unwrap().text.contains("cannot take over"));
        // The transfer's events read whole in the log.
        app.push_event(event(0, 5, EventKind::TransferStarted { to: 2, term: 42 }));
        app.push_event(event(
            0,
            6,
            EventKind::LeadershipTransferred { to: 2, term: 43 },
        ));
        let texts: Vec<&str> = app.events.iter().map(|e| e.text.as_str()).collect();
        assert!(
            texts.contains(&"handing leadership to node 2 (term 42)"),
            "{texts:?}"
        );
        assert!(
            texts.contains(&"leadership transferred to node 2 (term 43)"),
            "{texts:?}"
        );
    }

    #[test]
    fn c_crashes_and_r_restores_the_selected_node() {
        let mut app = three_nodes();
        press(&mut app, KeyCode::Char('2'));
        assert_eq!(press(&mut app, KeyCode::Char('c')), Some(Action::Crash(2)));
        assert_eq!(
            press(&mut app, KeyCode::Char('r')),
            None,
            "2 is not crashed"
        );
        assert!(app.events.back().unwrap().text.contains("not crashed"));

        press(&mut app, KeyCode::Char('1'));
        assert_eq!(press(&mut app, KeyCode::Char('c')), None, "1 is crashed");
        assert!(app.events.back().unwrap().text.contains("already crashed"));
        assert_eq!(
            press(&mut app, KeyCode::Char('r')),
            Some(Action::Restore(1))
        );
    }

    #[test]
    fn under_in_memory_k_is_not_offered_and_does_nothing_but_say_why() {
        let mut app = three_nodes();
        app.restartable = false;
        press(&mut app, KeyCode::Char('2'));
        let before = app.events.len();
        assert_eq!(press(&mut app, KeyCode::Char('k')), None);
        assert_eq!(app.events.len(), before + 1, "one line, no more");
        let last = app.events.back().unwrap();
        assert_eq!(last.text, surfstore::tui::app::KILL_NEEDS_DATA_DIR);
        assert_eq!(last.tone, Tone::Error);
        assert!(
            app.events.iter().all(|e| !e.text.contains("killed")),
            "no kill happened: {:?}",
            app.events
        );
        for (w, h) in [(80, 24), (121, 30)] {
            let buf = draw(&app, w, h);
            let text = screen(&buf);
            // The message reads whole on one line, even at 80 columns.
            let (_, l) = line_with(&buf, surfstore::tui::app::KILL_NEEDS_DATA_DIR);
            assert!(!l.contains('…'), "{l}");
            // The key bar offers every other key, but not k.
            let help: String = lines(&buf)[h as usize - 2..].join("\n");
            assert!(!help.contains("k kill"), "{w}x{h}: {help}");
            for key in EVERY_KEY.iter().filter(|k| **k != "k kill") {
                assert!(help.contains(key), "{key} missing from {help}");
            }
            assert!(!text.contains("kill"), "{w}x{h}: {text}");
        }
        // With data directories the key is back.
        app.restartable = true;
        let buf = draw(&app, 80, 24);
        assert!(lines(&buf)[22].contains("k kill"), "{}", screen(&buf));
    }

    #[test]
    fn k_kills_the_selected_node_crashed_or_not() {
        let mut app = three_nodes();
        press(&mut app, KeyCode::Char('2'));
        assert_eq!(press(&mut app, KeyCode::Char('k')), Some(Action::Kill(2)));
        assert!(app.events.back().unwrap().text.contains("data directory"));
        // A simulated crash does not stop a real one.
        press(&mut app, KeyCode::Char('1'));
        assert_eq!(press(&mut app, KeyCode::Char('k')), Some(Action::Kill(1)));
    }

    #[test]
    fn a_restores_all_when_any_node_is_crashed() {
        let mut app = three_nodes();
        assert_eq!(
            press(&mut app, KeyCode::Char('a')),
            Some(Action::RestoreAll)
        );
        app.set_status(1, status(1, Role::Follower, 42, 10, false));
        assert_eq!(press(&mut app, KeyCode::Char('a')), None);
    }

    #[test]
    fn w_writes_a_fresh_file_through_the_leader() {
        let mut app = three_nodes();
        assert_eq!(
            press(&mut app, KeyCode::Char('w')),
            Some(Action::Write {
                via: 0,
                filename: "demo-1.txt".into()
            })
        );
        assert_eq!(
            press(&mut app, KeyCode::Char('w')),
            Some(Action::Write {
                via: 0,
                filename: "demo-2.txt".into()
            })
        );
        // The leader crashes: no one to write through.
        app.set_status(0, status(0, Role::Leader, 42, 10, true));
        assert_eq!(press(&mut app, KeyCode::Char('w')), None);
        let last = app.events.back().unwrap();
        assert!(last.text.contains("no leader") && last.tone == Tone::Error);
        // A new leader in a higher term is preferred to a stale one.
        app.set_status(0, status(0, Role::Leader, 42, 10, false));
        app.set_status(2, status(2, Role::Leader, 43, 10, false));
        assert_eq!(
            press(&mut app, KeyCode::Char('w')),
            Some(Action::Write {
                via: 2,
                filename: "demo-3.txt".into()
            })
        );
    }

    #[test]
    fn q_esc_and_ctrl_c_quit() {
        for key in [
            KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE),
            KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE),
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
        ] {
            let mut app = three_nodes();
            assert_eq!(handle_key(&mut app, key), None, "{key:?}");
            assert!(!app.running, "{key:?}");
        }
    }

    #[test]
    fn key_releases_and_unknown_keys_do_nothing() {
        let mut app = three_nodes();
        let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(handle_key(&mut app, release), None);
        assert!(app.running);
        assert_eq!(press(&mut app, KeyCode::Char('z')), None);
        assert_eq!(press(&mut app, KeyCode::F(5)), None);
        assert!(app.running);
        assert_eq!(app.selected, 0);
    }

    #[test]
    fn the_event_log_stays_in_time_order_and_bounded() {
        let mut app = three_nodes();
        app.push_event(event(0, 10, EventKind::Crashed));
        app.push_event(event(1, 5, EventKind::Restored));
        let order: Vec<_> = app.events.iter().map(|r| r.at).collect();
        assert_eq!(order, vec![at(5), at(10)]);
        for i in 0..3000 {
            app.push_event(event(0, 100 + i, EventKind::ElectionStarted { term: i }));
        }
        assert_eq!(app.events.len(), surfstore::tui::app::EVENT_LOG_CAPACITY);
        assert_eq!(app.events.back().unwrap().at, at(3099));
    }
}

/// The partition keys, carried out on a real `Partition` as `tui::run` does.
mod partition {
    use super::*;

    fn press(app: &mut App, code: KeyCode) -> Option<Action> {
        handle_key(app, KeyEvent::new(code, KeyModifiers::NONE))
    }

    /// Presses `code` and carries out the partition change it asks for.
    fn press_net(app: &mut App, net: &Partition, code: KeyCode) -> NetAction {
        let Some(Action::Net(change)) = press(app, code) else {
            panic!("{code:?} asked for no partition change");
        };
        let changed = change.apply(net);
        app.net_applied(&change, changed, net.cuts());
        change
    }

    /// The `net` cell of row `y` (the column's width).
    fn net_cell(buf: &Buffer, y: u16) -> String {
        let (_, header) = line_with(buf, "address");
        let byte = header.find("net").expect("a net column");
        let x = header[..byte].chars().count();
        lines(buf)[y as usize]
            .chars()
            .skip(x)
            .take(ui::NET_WIDTH as usize)
            .collect::<String>()
            .trim()
            .to_owned()
    }

    #[test]
    fn p_isolates_the_selected_node_and_p_again_heals_it() {
        let mut app = three_nodes();
        let net = Partition::new(3);
        let buf = draw(&app, 80, 24);
        let (_, header) = line_with(&buf, "address");
        assert!(!header.contains("net"), "no column while nothing is cut");

        press(&mut app, KeyCode::Char('2'));
        assert_eq!(
            press_net(&mut app, &net, KeyCode::Char('p')),
            NetAction::Isolate(2)
        );
        for peer in [0, 1] {
            assert!(net.is_cut(2, peer) && net.is_cut(peer, 2), "{peer}");
        }
        assert!(!net.is_cut(0, 1));

        // (The selected row's highlight would cover the marker's colour.)
        press(&mut app, KeyCode::Char('0'));
        let buf = draw(&app, 80, 24);
        let (y2, row2) = line_with(&buf, "localhost:9003");
        assert_eq!(net_cell(&buf, y2), "ISOLATED", "{row2}");
        assert_eq!(cell_of(&buf, y2, "ISOLATED").bg, Color::Magenta);
        let (y0, _) = line_with(&buf, "localhost:9001");
        let (y1, _) = line_with(&buf, "localhost:9002");
        assert_eq!(net_cell(&buf, y0), "cut 2");
        assert_eq!(net_cell(&buf, y1), "cut 2");
        // The other columns are still there (at 80 columns snap and files
        // make room); the role still shows.
        assert!(row2.contains("Follower") && row2.contains("42"), "{row2}");
        let (_, header) = line_with(&buf, "address");
        assert!(
            !header.contains("snap") && !header.contains("files"),
            "{header}"
        );
        assert!(header.contains("applied"), "{header}");
        // The leader's replication panel says the follower is cut off.
        let (_, repl) = line_with(&buf, "node 2 ");
        assert!(repl.contains("CUT"), "{repl}");
        assert!(
            lines(&buf)[0].contains("2 link(s) cut"),
            "{}",
            lines(&buf)[0]
        );
        let (y, l) = line_with(&buf, "isolated node 2");
        assert!(l.contains("13:") || l.contains('·'), "{l}");
        assert_eq!(cell_of(&buf, y, "isolated node 2").fg, Color::Magenta);
        // Wider screens keep every column.
        let wide = draw(&app, 120, 30);
        let (_, header) = line_with(&wide, "address");
        for column in ["snap", "files", "net"] {
            assert!(header.contains(column), "{column}: {header}");
        }

        press(&mut app, KeyCode::Char('2'));
        assert_eq!(
            press_net(&mut app, &net, KeyCode::Char('p')),
            NetAction::HealNode(2)
        );
        assert!(!net.cuts().any());
        let buf = draw(&app, 80, 24);
        line_with(&buf, "healed node 2");
        let (_, header) = line_with(&buf, "address");
        assert!(
            !header.contains("net") && header.contains("snap"),
            "{header}"
        );
    }

    #[test]
    fn l_and_a_digit_cut_one_link_both_ways_and_again_heal_it() {
        let mut app = three_nodes();
        let net = Partition::new(3);
        assert_eq!(press(&mut app, KeyCode::Char('l')), None);
        assert_eq!(app.link_from, Some(0));
        let buf = draw(&app, 80, 24);
        let help = lines(&buf)[23].clone();
        assert!(
            help.contains("cut or heal the link from node 0 to node: 0-2"),
            "{help}"
        );
        assert_eq!(
            press_net(&mut app, &net, KeyCode::Char('1')),
            NetAction::CutLink(0, 1)
        );
        assert_eq!(app.link_from, None);
        assert!(net.is_cut(0, 1) && net.is_cut(1, 0) && !net.is_cut(0, 2));
        let buf = draw(&app, 80, 24);
        let (y0, _) = line_with(&buf, "localhost:9001");
        let (y1, _) = line_with(&buf, "localhost:9002");
        let (y2, _) = line_with(&buf, "localhost:9003");
        assert_eq!(net_cell(&buf, y0), "cut 1");
        assert_eq!(net_cell(&buf, y1), "cut 0");
        assert_eq!(net_cell(&buf, y2), "-");
        line_with(&buf, "cut the link between node 0 and node 1");
        assert!(lines(&buf)[23].contains("q quit"), "the key bar is back");

        // From the other end, the same link: healed.
        press(&mut app, KeyCode::Char('1'));
        press(&mut app, KeyCode::Char('l'));
        assert_eq!(
            press_net(&mut app, &net, KeyCode::Char('0')),
            NetAction::HealLink(1, 0)
        );
        assert!(!net.cuts().any());
        line_with(
            &draw(&app, 80, 24),
            "healed the link between node 1 and node 0",
        );
    }

    #[test]
    fn after_l_a_bad_digit_or_another_key_cancels_and_does_nothing_else() {
        let mut app = three_nodes();
        press(&mut app, KeyCode::Char('l'));
        assert_eq!(press(&mut app, KeyCode::Char('0')), None, "itself");
        assert!(app
            .events
            .back()
            .unwrap()
            .text
            .contains("no link between node 0 and node 0"));
        press(&mut app, KeyCode::Char('l'));
        assert_eq!(press(&mut app, KeyCode::Char('7')), None, "no node 7");
        assert_eq!(app.link_from, None);
        for key in [KeyCode::Esc, KeyCode::Char('q'), KeyCode::Char('c')] {
            press(&mut app, KeyCode::Char('l'));
            assert_eq!(press(&mut app, key), None, "{key:?}");
            assert!(app.running, "{key:?} after l cancels, not quits");
            assert_eq!(app.link_from, None);
            assert_eq!(app.events.back().unwrap().text, "link: cancelled");
        }
        // Ctrl-C still quits.
        press(&mut app, KeyCode::Char('l'));
        handle_key(
            &mut app,
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
        );
        assert!(!app.running);
    }

    #[test]
    fn h_heals_every_link() {
        let mut app = three_nodes();
        let net = Partition::new(3);
        assert_eq!(press(&mut app, KeyCode::Char('h')), None, "nothing cut");
        assert!(app.events.back().unwrap().text.contains("no link is cut"));
        press(&mut app, KeyCode::Char('l'));
        press_net(&mut app, &net, KeyCode::Char('1'));
        press(&mut app, KeyCode::Char('2'));
        press_net(&mut app, &net, KeyCode::Char('p'));
        assert!(line_with(&draw(&app, 100, 30), "localhost:9003")
            .1
            .contains("ISOLATED"));
        assert_eq!(
            press_net(&mut app, &net, KeyCode::Char('h')),
            NetAction::HealAll
        );
        assert!(!net.cuts().any());
        let buf = draw(&app, 80, 24);
        line_with(&buf, "healed all links");
        assert!(!screen(&buf).contains("ISOLATED"));
        assert!(!lines(&buf)[0].contains("cut"), "{}", lines(&buf)[0]);
    }

    #[test]
    fn the_table_follows_cuts_made_elsewhere_and_names_one_way_cuts() {
        let mut app = three_nodes();
        let net = Partition::new(3);
        net.set(1, 2, true);
        app.set_net(net.cuts());
        let buf = draw(&app, 100, 30);
        let (y1, _) = line_with(&buf, "localhost:9002");
        let (y2, _) = line_with(&buf, "localhost:9003");
        assert_eq!(net_cell(&buf, y1), "cut 2");
        assert_eq!(net_cell(&buf, y2), "cut 1");
        // p on a node that is cut one way only isolates it fully.
        press(&mut app, KeyCode::Char('2'));
        assert_eq!(
            press_net(&mut app, &net, KeyCode::Char('p')),
            NetAction::Isolate(2)
        );
        assert!(net.cuts().is_isolated(2));
    }

    #[test]
    fn many_cut_peers_are_counted_and_a_single_node_has_no_links() {
        let nodes = (0..7)
            .map(|i| NodeView {
                addr: format!("localhost:{}", 9001 + i),
                status: status(i, Role::Follower, 3, 1, false),
            })
            .collect();
        let mut app = App::new("7nodes.txt", nodes);
        let net = Partition::new(7);
        for b in 1..5 {
            net.cut_link(0, b);
        }
        app.set_net(net.cuts());
        assert_eq!(ui::net_label(&app.net, 0), "cut ×4");
        assert_eq!(ui::net_label(&app.net, 1), "cut 0");
        assert_eq!(ui::net_label(&app.net, 6), "-");
        net.isolate(0);
        app.set_net(net.cuts());
        assert_eq!(ui::net_label(&app.net, 0), "ISOLATED");

        let mut one = App::new(
            "1node.txt",
            vec![NodeView {
                addr: "localhost:9001".into(),
                status: status(0, Role::Leader, 1, 1, false),
            }],
        );
        assert_eq!(press(&mut one, KeyCode::Char('p')), None);
        assert_eq!(press(&mut one, KeyCode::Char('l')), None);
        assert_eq!(one.link_from, None);
        assert!(one.events.back().unwrap().text.contains("no links"));
    }

    #[test]
    fn event_text_wraps_at_spaces_and_marks_cut_words() {
        assert_eq!(text::wrap("abc def ghi", 7, 9), vec!["abc def", "ghi"]);
        assert_eq!(text::wrap("abcdefghij", 4, 9), vec!["abc…"]);
        assert_eq!(text::wrap("", 5, 9), vec![""]);
        assert_eq!(text::wrap("short", 80, 9), vec!["short"]);
        assert_eq!(text::wrap("ab cd", 2, 9), vec!["ab", "cd"]);
        assert_eq!(text::wrap("ab cd ef", 5, 1), vec!["ab…"]);
    }
}
