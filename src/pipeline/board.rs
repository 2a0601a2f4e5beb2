//! The workers' notices as the main thread shows them: on stderr, or to the
//! watcher when there is one; the waiting line once per run.

use crate::report::{Notice, Style, Watch};
use crossbeam::channel::Sender;

/// Shows workers' notices on stderr, the waiting line once per run.
pub(super) struct NoticeBoard {
    pub(super) style: Style,
    pub(super) waiting_shown: bool,
}

impl NoticeBoard {
    /// The line to show for `n`, if it is to be shown.
    pub(super) fn line(&mut self, n: &Notice) -> Option<String> {
        let repeat =
            matches!(n, Notice::Waiting { .. }) && std::mem::replace(&mut self.waiting_shown, true);
        (!repeat).then(|| self.style.notice(n))
    }

    /// On stderr, or to the watcher when there is one.
    pub(super) fn show(&mut self, n: &Notice, sink: Option<&Sender<Watch>>) {
        if let Some(line) = self.line(n) {
            match sink {
                // A watcher that went away has nobody left to tell.
                Some(tx) => drop(tx.send(Watch::Notice(n.clone()))),
                None => eprintln!("{line}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Retried;
    use std::time::Duration;

    #[test]
    fn the_waiting_notice_is_shown_once() {
        let mut board = NoticeBoard {
            style: Style { plain: true },
            waiting_shown: false,
        };
        let waiting = Notice::Waiting {
            slices: 1,
            lease: Duration::from_secs(30),
        };
        let retrying = Notice::Retrying {
            attempt: 1,
            attempts: 3,
            wait: Duration::from_secs(1),
            of: Retried::Page,
        };
        assert!(board.line(&retrying).is_some());
        assert_eq!(
            board.line(&waiting).as_deref(),
            Some("Aguardando 1 fatia(s) em uso por outro processo (lease de 30s)")
        );
        assert_eq!(board.line(&waiting), None);
        assert!(board.line(&retrying).is_some(), "other notices every time");
    }
}
