//! How the demo prints: whole lines, coloured on a terminal (none in a pipe, or with
//! `NO_COLOR`, through `anstream`), a progress line that stands at the bottom of a terminal
//! while the demo waits, and a feed of lines (chat messages, Git commits) that arrive in the
//! background and are printed under the step they belong to.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anstyle::{AnsiColor, Style};

/// Whether a progress line is on the screen now.
static PROGRESS_SHOWN: Mutex<bool> = Mutex::new(false);

/// Bold, for headings.
pub const HEADING: Style = Style::new().bold();
/// The phases and verdicts that went well.
pub const GOOD: Style = AnsiColor::Green.on_default();
/// The ones that did not.
pub const BAD: Style = AnsiColor::Red.on_default().bold();
/// A phase on its way.
pub const MOVING: Style = AnsiColor::Cyan.on_default();
/// Chat messages.
pub const CHAT: Style = AnsiColor::Magenta.on_default();
/// Git commits.
pub const GIT: Style = AnsiColor::Yellow.on_default();
/// What matters less.
pub const DIM: Style = Style::new().dimmed();

/// `text` in `style` (the codes are dropped again by `anstream` where colour is off).
pub fn paint(style: Style, text: impl std::fmt::Display) -> String {
    format!("{style}{text}{style:#}")
}

/// Prints one line (clearing the progress line first).
pub fn line(text: &str) {
    clear_progress();
    anstream::println!("{text}");
}

/// Shows `text` as the progress line: on a terminal only, replaced by the next progress line
/// and cleared by the next [`line`].
pub fn progress(text: &str) {
    if !std::io::stdout().is_terminal() {
        return;
    }
    let mut shown = PROGRESS_SHOWN.lock().unwrap_or_else(|e| e.into_inner());
    anstream::print!("\r\x1b[2K{}", paint(DIM, text));
    let _ = std::io::Write::flush(&mut std::io::stdout());
    *shown = true;
}

fn clear_progress() {
    let mut shown = PROGRESS_SHOWN.lock().unwrap_or_else(|e| e.into_inner());
    if *shown {
        anstream::print!("\r\x1b[2K");
        *shown = false;
    }
}

/// `[m:ss]` since the story began.
#[derive(Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    /// The stamp of now.
    pub fn stamp(self) -> String {
        paint(DIM, stamp(self.0.elapsed()))
    }
}

/// `[m:ss]` of a duration.
pub fn stamp(d: Duration) -> String {
    let s = d.as_secs();
    format!("[{:>2}:{:02}]", s / 60, s % 60)
}

/// Where a background line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A message the chat receiver got.
    Chat,
    /// A commit on the GitOps repository's branch.
    Git,
    /// The GitOps stand-in applying the repository.
    Apply,
}

/// One line that arrived in the background.
#[derive(Clone, Debug)]
pub struct FeedLine {
    /// When, since the story began.
    pub at: Duration,
    /// From where.
    pub source: Source,
    /// What.
    pub text: String,
}

/// Lines that arrive in the background, kept for the report and printed on [`Feed::flush`].
#[derive(Clone)]
pub struct Feed {
    clock: Clock,
    lines: Arc<Mutex<(Vec<FeedLine>, usize)>>,
}

impl Feed {
    /// An empty feed on the story's clock.
    pub fn new(clock: Clock) -> Feed {
        Feed {
            clock,
            lines: Arc::default(),
        }
    }

    /// Adds a line.
    pub fn push(&self, source: Source, text: impl Into<String>) {
        let mut l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        l.0.push(FeedLine {
            at: self.clock.0.elapsed(),
            source,
            text: text.into(),
        });
    }

    /// Prints the lines not printed yet, indented.
    pub fn flush(&self) {
        let mut l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let (lines, printed) = &mut *l;
        for f in &lines[*printed..] {
            let (style, label) = match f.source {
                Source::Chat => (CHAT, "chat "),
                Source::Git => (GIT, "git  "),
                Source::Apply => (GIT, "apply"),
            };
            line(&format!(
                "{}   {} {}",
                paint(DIM, stamp(f.at)),
                paint(style, label),
                f.text
            ));
        }
        *printed = lines.len();
    }

    /// Every line so far.
    pub fn all(&self) -> Vec<FeedLine> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }
}
