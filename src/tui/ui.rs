//! Draws an `App`; nothing else. Layout, top to bottom: a title bar, the node
//! table, replication progress (left) beside the selected node's log tail
//! (right), the event log, the key help (two lines when one is too narrow
//! for it). Below 80x24 it draws only a message asking for a larger terminal
//! (resizing back brings the dashboard back).
//!
//! The node table is a list of [`Column`]s: a new column is one more entry,
//! as long as the widths, a space between columns, the selection marker and
//! the borders still fit in `MIN_WIDTH` (a test checks it). While a link is
//! cut, one more column, [`NET_TITLE`], says which (`ISOLATED`, `cut 0,2`);
//! where the screen is too narrow for it, the columns named in
//! [`YIELD_TO_NET`] make room.
//!
//! Nothing is cut silently (see `text`): a cell, title or line too wide
//! for its place ends with `…`. Event lines too long for the pane wrap
//! between words onto indented continuation lines, at most
//! [`EVENT_MAX_LINES`] of them, the last ending with `…` after a whole word
//! when the text needs more; a line repeated in a row is shown once with
//! its count (`(×12)`).

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use crate::cluster::feed::clock;
use crate::node::peers::Cuts;
use crate::node::raft::NodeId;
use crate::tui::app::{App, LogRecord, NodeView, RoleView, Tone};
use crate::tui::text::{self, ellipsize, fit_line, fit_span};

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

/// Marks the selected row of the node table.
pub const SELECTED_MARKER: &str = "▶ ";

/// One column of the node table: its header, its width, and its cell
/// (cut to the width with `…` when wider).
pub struct Column {
    pub title: &'static str,
    pub width: Constraint,
    pub cell: fn(NodeId, &NodeView) -> Span<'static>,
}

fn or_dash(v: Option<NodeId>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The node table's columns, left to right.
pub const COLUMNS: &[Column] = &[
    Column {
        title: "id",
        width: Constraint::Length(2),
        cell: |id, _| Span::raw(id.to_string()),
    },
    Column {
        title: "address",
        width: Constraint::Length(19),
        cell: |_, n| Span::raw(n.addr.clone()),
    },
    Column {
        title: "role",
        width: Constraint::Length(9),
        cell: |_, n| {
            let role = n.role();
            Span::styled(role.label(), role_style(role))
        },
    },
    Column {
        title: "term",
        width: Constraint::Length(5),
        cell: |_, n| Span::raw(n.status.raft.term.to_string()),
    },
    Column {
        title: "vote",
        width: Constraint::Length(4),
        cell: |_, n| Span::raw(or_dash(n.status.raft.vote)),
    },
    Column {
        title: "last",
        width: Constraint::Length(5),
        cell: |_, n| Span::raw(n.status.raft.last_index.to_string()),
    },
    Column {
        title: "commit",
        width: Constraint::Length(6),
        cell: |_, n| Span::raw(n.status.raft.commit_index.to_string()),
    },
    Column {
        title: "applied",
        width: Constraint::Length(7),
        cell: |_, n| Span::raw(n.status.raft.applied_index.to_string()),
    },
    Column {
        // The log is compacted through here; "-" before the first snapshot.
        title: "snap",
        width: Constraint::Length(5),
        cell: |_, n| match n.status.raft.snapshot_index {
            0 => Span::raw("-"),
            i => Span::raw(i.to_string()),
        },
    },
    Column {
        title: "files",
        width: Constraint::Length(5),
        cell: |_, n| Span::raw(n.status.files.to_string()),
    },
];

/// The header of the column shown while a link is cut.
pub const NET_TITLE: &str = "net";

/// Its width: `ISOLATED`, or `cut ` and up to three ids.
pub const NET_WIDTH: u16 = 9;

/// Columns left out, in this order, while the net column is shown on a
/// screen too narrow for all of them (at 80 columns, both).
pub const YIELD_TO_NET: &[&str] = &["snap", "files"];

/// What the net column says about node `id`: `ISOLATED` (cut both ways
/// from every other node), `cut ` and the nodes it has a cut link with
/// (`cut ×N` when they do not fit), or `-`.
pub fn net_label(cuts: &Cuts, id: NodeId) -> String {
    if cuts.is_isolated(id) {
        return "ISOLATED".to_owned();
    }
    let peers = cuts.cut_peers(id);
    if peers.is_empty() {
        return "-".to_owned();
    }
    let list: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
    let label = format!("cut {}", list.join(","));
    if label.chars().count() <= NET_WIDTH as usize {
        label
    } else {
        format!("cut ×{}", peers.len())
    }
}

fn net_style(label: &str) -> Style {
    match label {
        "-" => Style::new(),
        "ISOLATED" => Style::new()
            .fg(Color::White)
            .bg(Color::Magenta)
            .add_modifier(Modifier::BOLD),
        _ => Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD),
    }
}

/// Links (unordered pairs) cut in at least one direction.
fn cut_links(cuts: &Cuts, m: usize) -> usize {
    (0..m as NodeId)
        .flat_map(|a| (a + 1..m as NodeId).map(move |b| (a, b)))
        .filter(|&(a, b)| cuts.is_cut(a, b) || cuts.is_cut(b, a))
        .count()
}

pub fn role_style(role: RoleView) -> Style {
    match role {
        RoleView::Leader => Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
        RoleView::Follower => Style::new().fg(Color::Cyan),
        RoleView::Candidate => Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        RoleView::PreCandidate => Style::new().fg(Color::Yellow),
        RoleView::Crashed | RoleView::Failed => Style::new()
            .fg(Color::White)
            .bg(Color::Red)
            .add_modifier(Modifier::BOLD),
    }
}

fn tone_style(tone: Tone) -> Style {
    match tone {
        Tone::Election => Style::new().fg(Color::Yellow),
        Tone::Vote => Style::new().fg(Color::Blue),
        Tone::Leader => Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
        Tone::LeadershipLost => Style::new().fg(Color::Magenta),
        Tone::Crash => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        Tone::Restore => Style::new().fg(Color::Green),
        Tone::Commit => Style::new().fg(Color::Cyan),
        Tone::Blocked => Style::new().fg(Color::Red),
        Tone::Network => Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD),
        Tone::Info => Style::new(),
        Tone::Error => Style::new().fg(Color::Red),
    }
}

pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        render_too_small(frame, area);
        return;
    }
    let m = app.nodes.len() as u16;
    let help_lines = help_lines(app, area.width);
    let help_h = help_lines.len() as u16;
    // Borders, header, one row per node; long tables scroll to the selection.
    let table_h = (m + 3).min(area.height / 2);
    let rest = area.height - 1 - help_h - table_h;
    let mid_h = (rest * 2 / 5).max(m + 1).max(5).min(rest - 4);
    let [title, table, mid, events, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(table_h),
        Constraint::Length(mid_h),
        Constraint::Min(4),
        Constraint::Length(help_h),
    ])
    .areas(area);
    let [replication, tail] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(mid);

    render_title(app, frame, title);
    render_nodes(app, frame, table);
    render_replication(app, frame, replication);
    render_log_tail(app, frame, tail);
    render_events(app, frame, events);
    frame.render_widget(Paragraph::new(help_lines), help);
}

fn render_too_small(frame: &mut Frame, area: Rect) {
    let text = format!(
        "terminal too small: need at least {MIN_WIDTH}x{MIN_HEIGHT} (now {}x{})",
        area.width, area.height
    );
    let lines: Vec<Line> = text::wrap(&text, area.width as usize, area.height as usize)
        .into_iter()
        .map(Line::from)
        .collect();
    let height = (lines.len() as u16).min(area.height);
    let y = area.y + (area.height - height) / 2;
    let middle = Rect::new(area.x, y, area.width, height);
    frame.render_widget(
        Paragraph::new(lines)
            .centered()
            .style(Style::new().add_modifier(Modifier::BOLD)),
        middle,
    );
}

fn render_title(app: &App, frame: &mut Frame, area: Rect) {
    let leader = match app.leader() {
        Some(l) => Span::styled(
            format!(
                "leader: node {l} (term {})",
                app.nodes[l as usize].status.raft.term
            ),
            role_style(RoleView::Leader),
        ),
        None => Span::styled("no leader", role_style(RoleView::Candidate)),
    };
    let line = Line::from(vec![
        Span::styled(
            " SurfStore-on-Raft ",
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("· {} nodes · ", app.nodes.len())),
        leader,
    ]);
    let mut line = line;
    // Before the config's name, which may be cut off on a narrow screen.
    let cut = cut_links(&app.net, app.nodes.len());
    if cut > 0 {
        line.spans.push(Span::raw(" · "));
        line.spans
            .push(Span::styled(format!("{cut} link(s) cut"), net_style("cut")));
    }
    line.spans.push(Span::raw(format!(" · {}", app.title)));
    frame.render_widget(Paragraph::new(fit_line(line, area.width as usize)), area);
}

/// The node table's columns on a table `inner_width` wide: every one of
/// [`COLUMNS`], and the net column while a link is cut, for which those of
/// [`YIELD_TO_NET`] give way as far as needed.
fn table_columns(app: &App, inner_width: u16) -> (Vec<&'static Column>, bool) {
    let mut cols: Vec<&'static Column> = COLUMNS.iter().collect();
    let net = app.net.any();
    if !net {
        return (cols, false);
    }
    let fixed = |c: &Column| match c.width {
        Constraint::Length(n) => n,
        _ => 0,
    };
    let marker = SELECTED_MARKER.chars().count() as u16;
    let needed = |cols: &[&Column]| -> u16 {
        cols.iter().map(|c| fixed(c)).sum::<u16>() + cols.len() as u16 + NET_WIDTH + marker
    };
    for title in YIELD_TO_NET {
        if needed(&cols) <= inner_width {
            break;
        }
        cols.retain(|c| c.title != *title);
    }
    (cols, true)
}

fn render_nodes(app: &App, frame: &mut Frame, area: Rect) {
    let (cols, net) = table_columns(app, area.width.saturating_sub(2));
    let mut titles: Vec<Cell> = cols.iter().map(|c| Cell::from(c.title)).collect();
    let mut widths: Vec<Constraint> = cols.iter().map(|c| c.width).collect();
    if net {
        titles.push(Cell::from(NET_TITLE));
        widths.push(Constraint::Length(NET_WIDTH));
    }
    let header =
        Row::new(titles).style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let rows = app.nodes.iter().enumerate().map(|(i, n)| {
        let mut cells: Vec<Cell> = cols
            .iter()
            .map(|c| {
                let span = (c.cell)(i as NodeId, n);
                match c.width {
                    Constraint::Length(w) => Cell::from(fit_span(span, w as usize)),
                    _ => Cell::from(span),
                }
            })
            .collect();
        if net {
            let label = net_label(&app.net, i as NodeId);
            let style = net_style(&label);
            cells.push(Cell::from(fit_span(
                Span::styled(label, style),
                NET_WIDTH as usize,
            )));
        }
        Row::new(cells)
    });
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title(" Nodes "))
        .row_highlight_style(Style::new().bg(Color::DarkGray))
        .highlight_symbol(SELECTED_MARKER)
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always)
        .flex(Flex::Start);
    let mut state = TableState::default().with_selected(Some(app.selected));
    frame.render_stateful_widget(table, area, &mut state);
}

/// A bordered block whose title is cut with `…` to fit `area`.
fn titled(title: String, area: Rect) -> Block<'static> {
    let room = area.width.saturating_sub(2) as usize;
    Block::bordered().title(ellipsize(&title, room).into_owned())
}

/// Draws `lines` in `area`, each cut with `…` to its width.
fn render_lines(frame: &mut Frame, area: Rect, lines: Vec<Line<'static>>) {
    let width = area.width as usize;
    let lines: Vec<Line> = lines.into_iter().map(|l| fit_line(l, width)).collect();
    frame.render_widget(Paragraph::new(lines), area);
}

/// Columns of a replication line besides its bar: `node 1 ` before it.
const REPLICATION_LABEL: usize = 7;

/// Columns kept for a follower's state after its match index (` lag 1234`,
/// ` CRASHED`, ` CUT`), at least.
const REPLICATION_STATE: usize = 9;

fn render_replication(app: &App, frame: &mut Frame, area: Rect) {
    let Some(leader) = app.leader() else {
        let block = titled(" Replication ".to_owned(), area);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        render_lines(
            frame,
            inner,
            vec![Line::styled(
                "no leader: waiting for an election",
                role_style(RoleView::Candidate),
            )],
        );
        return;
    };
    let raft = &app.nodes[leader as usize].status.raft;
    // The long title where it fits whole, else the short one: a number cut
    // by an ellipsis would read as another number.
    let room = area.width.saturating_sub(2) as usize;
    let long = format!(" Replication (leader {leader}, last #{}) ", raft.last_index);
    let title = if text::width(&long) <= room {
        long
    } else {
        format!(" Replication (last #{}) ", raft.last_index)
    };
    let block = titled(title, area);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // Per follower: (id, match index, bar colour, state).
    let rows: Vec<(NodeId, u64, Color, Span<'static>)> = raft
        .progress
        .iter()
        .map(|p| {
            let crashed = app
                .nodes
                .get(p.id as usize)
                .is_some_and(|n| n.status.crashed);
            let cut = app.net.is_cut(leader, p.id) || app.net.is_cut(p.id, leader);
            let matched = app.match_index(leader, p);
            let lag = raft.last_index.saturating_sub(matched);
            let (colour, state) = if crashed {
                (
                    Color::Red,
                    Span::styled(" CRASHED", role_style(RoleView::Crashed)),
                )
            } else if cut {
                (Color::Magenta, Span::styled(" CUT", net_style("ISOLATED")))
            } else if lag == 0 {
                (Color::Green, Span::raw(" lag 0"))
            } else {
                (Color::Yellow, Span::raw(format!(" lag {lag}")))
            };
            (p.id, matched, colour, state)
        })
        .collect();
    if rows.is_empty() {
        render_lines(
            frame,
            inner,
            vec![Line::from("a single node: nothing to replicate")],
        );
        return;
    }
    // "node 1 " + bar + " 12345" + " lag 1234" / " CRASHED" / " CUT".
    let number = raft.last_index.to_string().len().max(5);
    let state = rows
        .iter()
        .map(|r| r.3.width())
        .max()
        .unwrap_or(0)
        .max(REPLICATION_STATE);
    let bar_width = (inner.width as usize).saturating_sub(REPLICATION_LABEL + 1 + number + state);
    let lines = rows
        .into_iter()
        .map(|(id, matched, colour, state)| {
            let ratio = if raft.last_index == 0 {
                1.0
            } else {
                matched as f64 / raft.last_index as f64
            };
            let filled =
                ((ratio.clamp(0.0, 1.0) * bar_width as f64).round() as usize).min(bar_width);
            Line::from(vec![
                Span::raw(format!("node {id:<2}")),
                Span::styled("█".repeat(filled), Style::new().fg(colour)),
                Span::styled(
                    "░".repeat(bar_width - filled),
                    Style::new().fg(Color::DarkGray),
                ),
                Span::raw(format!(" {matched:>number$}")),
                state,
            ])
        })
        .collect();
    render_lines(frame, inner, lines);
}

fn render_log_tail(app: &App, frame: &mut Frame, area: Rect) {
    let id = app.selected_node();
    let node = &app.nodes[app.selected];
    let block = titled(
        format!(
            " Log of node {id} (commit #{}) ",
            node.status.raft.commit_index
        ),
        area,
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let lines: Vec<Line> = if app.log_tail.node != Some(id) {
        vec![Line::from("loading…").dark_gray()]
    } else if app.log_tail.lines.is_empty() {
        vec![Line::from("(empty log)").dark_gray()]
    } else {
        let shown = app
            .log_tail
            .lines
            .len()
            .saturating_sub(inner.height as usize);
        app.log_tail.lines[shown..]
            .iter()
            .map(|l| {
                let committed = l.index <= node.status.raft.commit_index;
                let style = if committed {
                    Style::new()
                } else {
                    Style::new().fg(Color::Yellow)
                };
                Line::from(vec![
                    Span::styled(format!("#{:<3}", l.index), Style::new().bold()),
                    Span::raw(format!(" t{:<2} ", l.term)),
                    Span::styled(l.command.clone(), style),
                ])
            })
            .collect()
    };
    render_lines(frame, inner, lines);
}

/// Characters before an event's text: `HH:MM:SS.mmm node N  `.
const EVENT_PREFIX: usize = 12 + 1 + 7 + 1;

/// Most screen lines one event takes; a longer text ends with `…`.
pub const EVENT_MAX_LINES: usize = 3;

fn render_events(app: &App, frame: &mut Frame, area: Rect) {
    let block = titled(" Events (UTC, newest last) ".to_owned(), area);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let height = inner.height as usize;
    let text_width = (inner.width as usize).saturating_sub(EVENT_PREFIX).max(10);
    // From the newest back, until the pane is full. The oldest shown keeps
    // its first line (time and node) and ends with `…` if the rest of it
    // has no room.
    let mut records: Vec<Vec<Line>> = Vec::new();
    let mut used = 0;
    for r in app.events.iter().rev() {
        if used >= height {
            break;
        }
        let record = event_lines(r, text_width, EVENT_MAX_LINES.min(height - used));
        used += record.len();
        records.push(record);
    }
    let lines: Vec<Line> = records.into_iter().rev().flatten().collect();
    render_lines(frame, inner, lines);
}

/// One event in at most `max_lines` screen lines: the first with its time
/// and node, the rest of a text longer than `width` on indented
/// continuation lines.
fn event_lines(r: &LogRecord, width: usize, max_lines: usize) -> Vec<Line<'static>> {
    let who = match r.node {
        Some(n) => format!("node {n:<2}"),
        None => "  ·    ".to_owned(),
    };
    let text = if r.repeats > 1 {
        format!("{} (×{})", r.text, r.repeats)
    } else {
        r.text.clone()
    };
    let style = tone_style(r.tone);
    text::wrap(&text, width, max_lines)
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                Line::from(vec![
                    Span::styled(clock(r.at), Style::new().fg(Color::DarkGray)),
                    Span::raw(" "),
                    Span::styled(who.clone(), Style::new().bold()),
                    Span::raw(" "),
                    Span::styled(part, style),
                ])
            } else {
                Line::from(vec![
                    Span::raw(" ".repeat(EVENT_PREFIX)),
                    Span::styled(part, style),
                ])
            }
        })
        .collect()
}

/// The key bar: as many lines (one or two) as `width` needs, each cut with
/// `…` if even two are too narrow. After `l` it asks for the other end of
/// the link instead. `k` is offered only when the nodes can be restarted
/// from a data directory.
fn help_lines(app: &App, width: u16) -> Vec<Line<'static>> {
    let last = (app.nodes.len() - 1).min(9);
    let digits = if last == 0 {
        "0".to_owned()
    } else {
        format!("0-{last}")
    };
    let key = |k: String| {
        Span::styled(
            k,
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD),
        )
    };
    if let Some(from) = app.link_from {
        let line = Line::from(vec![
            Span::raw(" "),
            Span::styled(
                format!("cut or heal the link from node {from} to node: "),
                net_style("cut"),
            ),
            key(digits),
            Span::raw("  any other key cancels"),
        ]);
        return vec![fit_line(line, width as usize)];
    }
    let mut items: Vec<(String, &str)> =
        vec![(format!("{digits} ↑↓"), "select"), ("c".into(), "crash")];
    if app.restartable {
        items.push(("k".into(), "kill"));
    }
    items.extend([
        ("r".into(), "restore"),
        ("a".into(), "restore all"),
        ("w".into(), "write"),
        ("t".into(), "lead"),
        ("p".into(), "isolate"),
        (format!("l {digits}"), "cut link"),
        ("h".into(), "heal all"),
        ("q".into(), "quit"),
    ]);
    let mut lines: Vec<Vec<Span<'static>>> = vec![vec![Span::raw(" ")]];
    let mut used = 1usize;
    for (k, label) in items {
        let len = text::width(&k) + 1 + text::width(label);
        let sep = if used > 1 { 2 } else { 0 };
        if used > 1 && used + sep + len > width as usize && lines.len() < 2 {
            lines.push(vec![Span::raw(" ")]);
            used = 1;
        }
        let line = lines.last_mut().expect("one line at least");
        if used > 1 {
            line.push(Span::raw("  "));
            used += 2;
        }
        line.push(key(k));
        line.push(Span::raw(format!(" {label}")));
        used += len;
    }
    lines
        .into_iter()
        .map(|spans| fit_line(Line::from(spans), width as usize))
        .collect()
}
