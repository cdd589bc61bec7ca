//! The sequential specification of one SurfStore file: a version register.
//!
//! A file's state is `(version, hashlist)`; an unknown file is version 0. An
//! `updatefile(v, h)` succeeds iff `v == version + 1` and then sets the state
//! to `(v, h)`; otherwise it returns `false` and changes nothing. A read (one
//! file's projection of `getfileinfomap`) returns the state, or "absent" for
//! version 0. Hashlists are interned per file to small ids (see
//! [`super::history::FileHistory`]) so states are two machine words.

/// The interned id of "no hashlist" (an absent file).
pub const NO_HASH: u32 = 0;

/// One file's register state. Invariant: `version == 0` iff `hash == NO_HASH`
/// for states the model produces from the initial state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct State {
    pub version: i64,
    pub hash: u32,
}

impl State {
    /// The state of a file nobody has written.
    pub const ABSENT: State = State {
        version: 0,
        hash: NO_HASH,
    };
}

/// What one operation did to one file, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOpKind {
    /// `updatefile(file, version, hashlist)`; `ok` is the answer, `None` when the
    /// outcome is unknown (it may or may not have taken effect).
    Write {
        version: i64,
        hash: u32,
        ok: Option<bool>,
    },
    /// The file as a `getfileinfomap` answer showed it (`version` 0: absent).
    Read { version: i64, hash: u32 },
}

/// Applies `op` to `state`: the next state if the observed answer is possible
/// in `state`, `None` if it is not.
pub fn step(state: State, op: &FileOpKind) -> Option<State> {
    match *op {
        FileOpKind::Write { version, hash, ok } => {
            let applies = version == state.version + 1;
            match ok {
                Some(true) if applies => Some(State { version, hash }),
                Some(true) => None,
                Some(false) if applies => None,
                Some(false) => Some(state),
                // Unknown: it did whatever the version rule makes it do here.
                None if applies => Some(State { version, hash }),
                None => Some(state),
            }
        }
        FileOpKind::Read { version, hash } => {
            let matches = if version == 0 {
                state.version == 0
            } else {
                state.version == version && state.hash == hash
            };
            matches.then_some(state)
        }
    }
}

/// True when `op` would change `state`. An operation of unknown outcome is
/// only worth placing where it does: placed where it changes nothing it
/// constrains nothing, and leaving it out entirely is always allowed (it may
/// never have happened), so the checker tries it nowhere else.
pub fn changes(state: State, op: &FileOpKind) -> bool {
    match *op {
        FileOpKind::Write { version, .. } => version == state.version + 1,
        FileOpKind::Read { .. } => false,
    }
}

/// True when `op` can change neither `state` nor any state after it:
/// versions only grow, so a write of a version at or below the current one is
/// a no-op from here on. The checker sets such an operation of unknown outcome
/// aside (it "never happened") instead of trying it again at every step.
pub fn spent(state: State, op: &FileOpKind) -> bool {
    match *op {
        FileOpKind::Write { version, .. } => version <= state.version,
        FileOpKind::Read { .. } => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(version: i64, hash: u32, ok: Option<bool>) -> FileOpKind {
        FileOpKind::Write { version, hash, ok }
    }

    #[test]
    fn the_version_rule() {
        let s = State::ABSENT;
        assert_eq!(
            step(s, &w(1, 7, Some(true))),
            Some(State {
                version: 1,
                hash: 7
            })
        );
        assert_eq!(step(s, &w(2, 7, Some(true))), None);
        assert_eq!(step(s, &w(2, 7, Some(false))), Some(s));
        assert_eq!(step(s, &w(1, 7, Some(false))), None);
        assert_eq!(
            step(s, &w(1, 7, None)),
            Some(State {
                version: 1,
                hash: 7
            })
        );
        assert_eq!(step(s, &w(3, 7, None)), Some(s));
    }

    #[test]
    fn reads_see_the_state_or_absence() {
        let s = State {
            version: 2,
            hash: 3,
        };
        assert_eq!(
            step(
                s,
                &FileOpKind::Read {
                    version: 2,
                    hash: 3
                }
            ),
            Some(s)
        );
        assert_eq!(
            step(
                s,
                &FileOpKind::Read {
                    version: 2,
                    hash: 4
                }
            ),
            None
        );
        assert_eq!(
            step(
                s,
                &FileOpKind::Read {
                    version: 0,
                    hash: 0
                }
            ),
            None
        );
        let a = State::ABSENT;
        assert_eq!(
            step(
                a,
                &FileOpKind::Read {
                    version: 0,
                    hash: 0
                }
            ),
            Some(a)
        );
    }

    #[test]
    fn what_changes_a_state() {
        let s = State {
            version: 2,
            hash: 3,
        };
        assert!(!changes(s, &w(2, 9, None)));
        assert!(changes(s, &w(3, 9, None)));
        assert!(!changes(s, &w(4, 9, None)));
        assert!(!changes(
            s,
            &FileOpKind::Read {
                version: 2,
                hash: 3
            }
        ));
    }
}
