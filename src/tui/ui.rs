//! Draws an `App`; nothing else. Layout, top to bottom: a title bar, the node
//! table, replication progress (left) beside the selected node's log tail
//! (right), the event log, the key help. Below 80x24 it draws only a message
//! asking for a larger terminal (resizing back brings the dashboard back).
//!
//! The node table is a list of [`Column`]s: a new column is one more entry,
//! as long as the widths, a space between columns, the selection marker and
//! the borders still fit in `MIN_WIDTH` (a test checks it).

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use crate::cluster::feed::clock;
use crate::node::raft::NodeId;
use crate::tui::app::{App, NodeView, RoleView, Tone};

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

/// Marks the selected row of the node table.
pub const SELECTED_MARKER: &str = "▶ ";

/// One column of the node table: its header, its width, and its cell.
pub struct Column {
    pub title: &'static str,
    pub width: Constraint,
    pub cell: fn(NodeId, &NodeView) -> Cell<'static>,
}

fn or_dash(v: Option<NodeId>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The node table's columns, left to right.
pub const COLUMNS: &[Column] = &[
    Column {
        title: "id",
        width: Constraint::Length(2),
        cell: |id, _| Cell::from(id.to_string()),
    },
    Column {
        title: "address",
        width: Constraint::Length(19),
        cell: |_, n| Cell::from(n.addr.clone()),
    },
    Column {
        title: "role",
        width: Constraint::Length(9),
        cell: |_, n| {
            let role = n.role();
            Cell::from(Span::styled(role.label(), role_style(role)))
        },
    },
    Column {
        title: "term",
        width: Constraint::Length(5),
        cell: |_, n| Cell::from(n.status.raft.term.to_string()),
    },
    Column {
        title: "vote",
        width: Constraint::Length(4),
        cell: |_, n| Cell::from(or_dash(n.status.raft.vote)),
    },
    Column {
        title: "last",
        width: Constraint::Length(5),
        cell: |_, n| Cell::from(n.status.raft.last_index.to_string()),
    },
    Column {
        title: "commit",
        width: Constraint::Length(6),
        cell: |_, n| Cell::from(n.status.raft.commit_index.to_string()),
    },
    Column {
        title: "applied",
        width: Constraint::Length(7),
        cell: |_, n| Cell::from(n.status.raft.applied_index.to_string()),
    },
    Column {
        // The log is compacted through here; "-" before the first snapshot.
        title: "snap",
        width: Constraint::Length(5),
        cell: |_, n| match n.status.raft.snapshot_index {
            0 => Cell::from("-"),
            i => Cell::from(i.to_string()),
        },
    },
    Column {
        title: "files",
        width: Constraint::Length(5),
        cell: |_, n| Cell::from(n.status.files.to_string()),
    },
];

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
    // Borders, header, one row per node; long tables scroll to the selection.
    let table_h = (m + 3).min(area.height / 2);
    let rest = area.height - 2 - table_h;
    let mid_h = (rest * 2 / 5).max(m + 1).max(5).min(rest - 4);
    let [title, table, mid, events, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(table_h),
        Constraint::Length(mid_h),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(area);
    let [replication, tail] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(mid);

    render_title(app, frame, title);
    render_nodes(app, frame, table);
    render_replication(app, frame, replication);
    render_log_tail(app, frame, tail);
    render_events(app, frame, events);
    render_help(app, frame, help);
}

fn render_too_small(frame: &mut Frame, area: Rect) {
    let text = format!(
        "terminal too small: need at least {MIN_WIDTH}x{MIN_HEIGHT} (now {}x{})",
        area.width, area.height
    );
    let lines = (text.len() as u16)
        .div_ceil(area.width.max(1))
        .min(area.height);
    let y = area.y + (area.height - lines) / 2;
    let middle = Rect::new(area.x, y, area.width, lines);
    frame.render_widget(
        Paragraph::new(text)
            .centered()
            .wrap(Wrap { trim: true })
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
        Span::raw(format!(" · {}", app.title)),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

fn render_nodes(app: &App, frame: &mut Frame, area: Rect) {
    let header = Row::new(COLUMNS.iter().map(|c| Cell::from(c.title)))
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let rows = app
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| Row::new(COLUMNS.iter().map(|c| (c.cell)(i as NodeId, n))));
    let table = Table::new(rows, COLUMNS.iter().map(|c| c.width))
        .header(header)
        .block(Block::bordered().title(" Nodes "))
        .row_highlight_style(Style::new().bg(Color::DarkGray))
        .highlight_symbol(SELECTED_MARKER)
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always)
        .flex(Flex::Start);
    let mut state = TableState::default().with_selected(Some(app.selected));
    frame.render_stateful_widget(table, area, &mut state);
}

fn render_replication(app: &App, frame: &mut Frame, area: Rect) {
    let Some(leader) = app.leader() else {
        let block = Block::bordered().title(" Replication ");
        let text = Paragraph::new("no leader: waiting for an election")
            .style(role_style(RoleView::Candidate))
            .block(block);
        frame.render_widget(text, area);
        return;
    };
    let raft = &app.nodes[leader as usize].status.raft;
    let block = Block::bordered().title(format!(
        " Replication (leader {leader}, last #{}) ",
        raft.last_index
    ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // "node 1 " + bar + " 12345" + " lag 1234" or " CRASHED "
    let bar_width = inner.width.saturating_sub(7 + 6 + 9) as usize;
    let lines: Vec<Line> = raft
        .progress
        .iter()
        .map(|p| {
            let crashed = app
                .nodes
                .get(p.id as usize)
                .is_some_and(|n| n.status.crashed);
            let lag = raft.last_index.saturating_sub(p.match_index);
            let ratio = if raft.last_index == 0 {
                1.0
            } else {
                p.match_index as f64 / raft.last_index as f64
            };
            let filled =
                ((ratio.clamp(0.0, 1.0) * bar_width as f64).round() as usize).min(bar_width);
            let colour = if crashed {
                Color::Red
            } else if lag == 0 {
                Color::Green
            } else {
                Color::Yellow
            };
            let state = if crashed {
                Span::styled(" CRASHED", role_style(RoleView::Crashed))
            } else {
                Span::raw(format!(" lag {lag}"))
            };
            Line::from(vec![
                Span::raw(format!("node {:<2}", p.id)),
                Span::styled("█".repeat(filled), Style::new().fg(colour)),
                Span::styled(
                    "░".repeat(bar_width - filled),
                    Style::new().fg(Color::DarkGray),
                ),
                Span::raw(format!(" {:>5}", p.match_index)),
                state,
            ])
        })
        .collect();
    let lines = if lines.is_empty() {
        vec![Line::from("a single node: nothing to replicate")]
    } else {
        lines
    };
    frame.render_widget(Paragraph::new(lines), inner);
}

fn render_log_tail(app: &App, frame: &mut Frame, area: Rect) {
    let id = app.selected_node();
    let node = &app.nodes[app.selected];
    let block = Block::bordered().title(format!(
        " Log of node {id} (commit #{}) ",
        node.status.raft.commit_index
    ));
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
    frame.render_widget(Paragraph::new(lines), inner);
}

fn render_events(app: &App, frame: &mut Frame, area: Rect) {
    let block = Block::bordered().title(" Events (UTC, newest last) ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let skip = app.events.len().saturating_sub(inner.height as usize);
    let lines: Vec<Line> = app
        .events
        .iter()
        .skip(skip)
        .map(|r| {
            let who = match r.node {
                Some(n) => format!("node {n:<2}"),
                None => "  ·    ".to_owned(),
            };
            Line::from(vec![
                Span::styled(clock(r.at), Style::new().fg(Color::DarkGray)),
                Span::raw(" "),
                Span::styled(who, Style::new().bold()),
                Span::raw(" "),
                Span::styled(r.text.clone(), tone_style(r.tone)),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

fn render_help(app: &App, frame: &mut Frame, area: Rect) {
    let last = (app.nodes.len() - 1).min(9);
    let select = if last == 0 {
        "0 ↑↓".to_owned()
    } else {
        format!("0-{last} ↑↓")
    };
    let key = |k: String| {
        Span::styled(
            k,
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD),
        )
    };
    let spans = vec![
        Span::raw(" "),
        key(select),
        Span::raw(" select  "),
        key("c".into()),
        Span::raw(" crash  "),
        key("k".into()),
        Span::raw(" kill  "),
        key("r".into()),
        Span::raw(" restore  "),
        key("a".into()),
        Span::raw(" restore all  "),
        key("w".into()),
        Span::raw(" write  "),
        key("q".into()),
        Span::raw(" quit"),
    ];
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
