//! `kubeyard test`'s progress, on stderr while tests run (the report stays on stdout):
//! on a terminal, one live line per running test (what it is doing and for how long),
//! redrawn as time passes and cleared before the report prints, as cargo nextest shows
//! running tests; elsewhere (CI logs), a plain line as each step starts and ends.

use crate::testing::runner::{Event, Test};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live lines, redrawn (stderr is a terminal).
    Live,
    /// A line per start and end of a step.
    Plain,
    /// Nothing (reports compared or snapshotted).
    Off,
}

impl Mode {
    /// Live on a terminal, plain elsewhere.
    pub fn detect() -> Mode {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() { Mode::Live } else { Mode::Plain }
    }
}

#[derive(Default)]
struct State {
    /// Each running test's activity and since when, by name.
    running: BTreeMap<String, (String, Instant)>,
    /// Live lines on the screen now.
    drawn: usize,
}

/// The progress of a run, shared by its tests.
#[derive(Clone)]
pub struct Progress {
    mode: Mode,
    state: Arc<Mutex<State>>,
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.1}s", elapsed.as_secs_f64())
}

impl Progress {
    pub fn new(mode: Mode) -> Progress {
        Progress { mode, state: Arc::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hears a test's event.
    pub fn event(&self, test: &Test, event: Event<'_>) {
        let activity = match event {
            Event::Boot => "booting its cluster".to_string(),
            Event::Step { title, of } => format!("step {title} (of {of})"),
            Event::StepDone(step) => {
                if self.mode == Mode::Plain {
                    let verdict = if step.passed { "PASS" } else { "FAIL" };
                    self.line(&format!("{verdict:5} {}: {} [{:.2?}]", test.name, step.title, step.elapsed));
                }
                return;
            }
            Event::Cleanup => "cleaning up".to_string(),
        };
        match self.mode {
            Mode::Off => {}
            Mode::Plain => self.line(&format!("START {}: {activity}", test.name)),
            Mode::Live => {
                let mut state = self.lock();
                state.running.insert(test.name.clone(), (activity, Instant::now()));
                self.redraw(&mut state);
            }
        }
    }

    /// A test ended: its live line goes.
    pub fn finished(&self, test: &str) {
        if self.mode == Mode::Live {
            let mut state = self.lock();
            state.running.remove(test);
            self.redraw(&mut state);
        }
    }

    /// Prints `text` on stdout, live lines cleared first and drawn again after.
    pub fn print(&self, text: &str) {
        let mut state = self.lock();
        if self.mode == Mode::Live {
            Self::clear(&mut state);
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        drop(out);
        if self.mode == Mode::Live {
            self.redraw(&mut state);
        }
    }

    /// Says `text` on stderr, above the live lines (which are drawn again under it).
    pub fn note(&self, text: &str) {
        let mut state = self.lock();
        if self.mode == Mode::Live {
            Self::clear(&mut state);
        }
        self.line(text);
        if self.mode == Mode::Live {
            self.redraw(&mut state);
        }
    }

    /// Redraws the live lines every `period` until the returned task is dropped.
    pub fn ticking(&self, period: Duration) -> Option<tokio::task::JoinHandle<()>> {
        if self.mode != Mode::Live {
            return None;
        }
        let progress = self.clone();
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let mut state = progress.lock();
                progress.redraw(&mut state);
            }
        }))
    }

    /// Clears the live lines for good (the run is over).
    pub fn done(&self) {
        if self.mode == Mode::Live {
            Self::clear(&mut self.lock());
        }
    }

    fn line(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }

    fn clear(state: &mut State) {
        if state.drawn > 0 {
            // Up to the first live line, then erase to the end of the screen.
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\x1b[{}F\x1b[J", state.drawn);
            let _ = err.flush();
            state.drawn = 0;
        }
    }

    fn redraw(&self, state: &mut State) {
        Self::clear(state);
        // A line wider than the terminal would wrap, and clearing would miss its tail.
        let width = terminal_width().saturating_sub(1).max(20);
        let lines: Vec<String> = state
            .running
            .iter()
            .map(|(name, (activity, since))| {
                let line = format!("    RUNNING {name}: {activity} {}", seconds(since.elapsed()));
                line.chars().take(width).collect()
            })
            .collect();
        let mut err = std::io::stderr().lock();
        for line in &lines {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
        state.drawn = lines.len();
    }
}

/// stderr's terminal's width in columns (80 when it cannot be told).
fn terminal_width() -> usize {
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ only writes the struct it is given.
    let read = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if read && size.ws_col > 0 { usize::from(size.ws_col) } else { 80 }
}
