//! Stages as a graph: every stage the target needs starts at once, and one that needs
//! another (its base, a `COPY --from`, a `RUN --mount=from=`) waits for that one's result
//! only, so independent stages build side by side (as BuildKit builds them; the classic
//! builder and kaniko build each in turn).
//!
//! The classic API's stream is one text: each stage's lines are shown in the Dockerfile's
//! order, the first unfinished stage's as they come and a later one's when those before it
//! are done, so the output reads as a build in sequence.

use futures_util::future::try_join_all;
use tokio::sync::mpsc;

use crate::stage::{Build, State};
use crate::{Progress, Result};

/// Builds the stages of `b` (its `order`); returns the last one's state.
pub(crate) async fn run_stages(b: &Build<'_>, out: &mut (dyn FnMut(Progress) + Send)) -> Result<State> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Option<Progress>)>();
    let stages: Vec<_> = b
        .order
        .iter()
        .enumerate()
        .map(|(pos, &i)| {
            let tx = tx.clone();
            async move {
                let mut send = |p: Progress| {
                    let _ = tx.send((pos, Some(p)));
                };
                let st = b.stage(pos, i, &mut send).await?;
                let _ = tx.send((pos, None));
                Ok(st)
            }
        })
        .collect();
    drop(tx);
    let all = try_join_all(stages);
    tokio::pin!(all);
    let mut shown = Ordered::new(b.order.len());
    let r: Result<Vec<State>> = loop {
        tokio::select! {
            biased;
            Some((pos, p)) = rx.recv() => shown.push(pos, p, out),
            r = &mut all => break r,
        }
    };
    while let Ok((pos, p)) = rx.try_recv() {
        shown.push(pos, p, out);
    }
    // After a failure: what the stages said before it, the failing one's last words included.
    shown.flush(out);
    Ok(r?.pop().unwrap_or_default())
}

/// Stage output put in the stages' order.
struct Ordered {
    /// The stage whose output goes straight out.
    cur: usize,
    held: Vec<Vec<Progress>>,
    ended: Vec<bool>,
}

impl Ordered {
    fn new(n: usize) -> Ordered {
        Ordered {
            cur: 0,
            held: vec![Vec::new(); n],
            ended: vec![false; n],
        }
    }

    /// Stage `pos` said `p` (`None`: it ended).
    fn push(&mut self, pos: usize, p: Option<Progress>, out: &mut (dyn FnMut(Progress) + Send)) {
        match p {
            Some(p) if pos == self.cur => out(p),
            Some(p) => self.held[pos].push(p),
            None => self.ended[pos] = true,
        }
        while self.cur < self.ended.len() && self.ended[self.cur] {
            self.cur += 1;
            if let Some(h) = self.held.get_mut(self.cur) {
                for p in std::mem::take(h) {
                    out(p);
                }
            }
        }
    }

    /// Everything still held, in order.
    fn flush(&mut self, out: &mut (dyn FnMut(Progress) + Send)) {
        for h in &mut self.held {
            for p in std::mem::take(h) {
                out(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_output_reads_in_order_whatever_order_it_comes_in() {
        let mut o = Ordered::new(3);
        let mut got = Vec::new();
        let mut out = |p: Progress| {
            if let Progress::Stream(s) = p {
                got.push(s)
            }
        };
        let s = |t: &str| Some(Progress::Stream(t.into()));
        o.push(2, s("c1"), &mut out);
        o.push(1, s("b1"), &mut out);
        o.push(0, s("a1"), &mut out);
        o.push(1, None, &mut out);
        o.push(2, s("c2"), &mut out);
        o.push(0, s("a2"), &mut out);
        o.push(0, None, &mut out);
        o.push(2, s("c3"), &mut out);
        o.push(2, None, &mut out);
        o.flush(&mut out);
        assert_eq!(got, ["a1", "a2", "b1", "c1", "c2", "c3"]);
    }
}
