//! `wharf build --progress=tty`: the classic stream as a live view. Each step is a line with
//! a spinner and its time while it runs, then `[+]` (or `CACHED`) and its time; what a step
//! prints goes above it, indented; the image ID and names at the end.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The view (inactive: prints nothing itself).
pub struct View {
    active: bool,
    bar: Option<ProgressBar>,
    step: String,
    started: Instant,
    cached: bool,
    /// Text not yet ended by a newline.
    partial: String,
}

impl View {
    pub fn new(active: bool) -> View {
        View {
            active,
            bar: None,
            step: String::new(),
            started: Instant::now(),
            cached: false,
            partial: String::new(),
        }
    }

    fn end_step(&mut self, mark: &str) {
        if let Some(b) = self.bar.take() {
            let tag = if self.cached { "CACHED " } else { "" };
            let secs = self.started.elapsed().as_secs_f64();
            b.finish_and_clear();
            eprintln!("{mark} {tag}{} {secs:.1}s", self.step);
        }
    }

    /// A piece of the build's text.
    pub fn text(&mut self, s: &str) {
        if !self.active {
            return;
        }
        self.partial.push_str(s);
        while let Some(nl) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=nl).collect();
            self.line(line.trim_end_matches(['\n', '\r']));
        }
    }

    fn line(&mut self, l: &str) {
        if let Some(rest) = l.strip_prefix("Step ") {
            self.end_step("[+]");
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("template"));
            bar.enable_steady_tick(std::time::Duration::from_millis(100));
            self.step = format!("[{}", rest.replacen(" : ", "] ", 1));
            bar.set_message(self.step.clone());
            self.bar = Some(bar);
            self.started = Instant::now();
            self.cached = false;
        } else if l.trim() == "---> Using cache" {
            self.cached = true;
        } else if l.starts_with(" ---> ") || l.starts_with("Removing intermediate container") {
            // The classic stream's bookkeeping: the view shows steps instead.
        } else if l.starts_with("Successfully ") {
            self.end_step("[+]");
            eprintln!("{l}");
        } else {
            let shown = format!("    {l}");
            match &self.bar {
                // Above the running step's line (off a terminal the bar draws nothing).
                Some(b) if !b.is_hidden() => b.println(shown),
                _ => eprintln!("{shown}"),
            }
        }
    }

    /// The build failed: the running step is marked so.
    pub fn fail(&mut self) {
        if self.active {
            self.end_step("[x]");
        }
    }

    /// The stream ended.
    pub fn finish(&mut self) {
        if self.active {
            let rest = std::mem::take(&mut self.partial);
            if !rest.is_empty() {
                self.line(&rest);
            }
            self.end_step("[+]");
        }
    }
}
