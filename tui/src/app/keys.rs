//! Keyboard handling: what each key does in each mode, and the dialogs
//! that collect a scale factor or a cordon/drain label before an action
//! runs.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::*;

impl App {
    /// Handles a key press; returns the action to run, if any.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL)
            && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('C'))
        {
            return Some(Action::Quit);
        }
        match self.mode.clone() {
            Mode::Help => {
                match key.code {
                    KeyCode::Char('q') => return Some(Action::Quit),
                    KeyCode::Char('?') | KeyCode::Esc | KeyCode::Enter => self.mode = Mode::Normal,
                    _ => {}
                }
                None
            }
            Mode::Filter => {
                match key.code {
                    KeyCode::Char(c)
                        if !c.is_control() && self.filter.chars().count() < MAX_INPUT_CHARS =>
                    {
                        self.filter.push(c);
                    }
                    KeyCode::Backspace => {
                        self.filter.pop();
                    }
                    KeyCode::Enter => self.mode = Mode::Normal,
                    KeyCode::Esc => {
                        self.filter.clear();
                        self.mode = Mode::Normal;
                    }
                    _ => {}
                }
                self.events_scroll = 0;
                None
            }
            Mode::Dialog(dialog) => self.dialog_key(dialog, key),
            Mode::Normal => self.normal_key(key),
        }
    }

    fn normal_key(&mut self, key: KeyEvent) -> Option<Action> {
        match key.code {
            KeyCode::Char('q') => return Some(Action::Quit),
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Char('/') => self.mode = Mode::Filter,
            KeyCode::Char('r') => return Some(Action::Refresh),
            KeyCode::Tab | KeyCode::Right | KeyCode::Char('l') => self.view = self.view.step(1),
            KeyCode::BackTab | KeyCode::Left | KeyCode::Char('h') => self.view = self.view.step(-1),
            KeyCode::Char(c @ '1'..='5') => {
                let i = c as usize - '1' as usize;
                self.view = View::ALL[i];
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::PageUp => self.move_selection(-10),
            KeyCode::PageDown => self.move_selection(10),
            KeyCode::Home | KeyCode::Char('g') => self.move_selection(-(MAX_EVENTS as isize)),
            KeyCode::End | KeyCode::Char('G') => self.move_selection(MAX_EVENTS as isize),
            KeyCode::Esc => {
                self.filter.clear();
                self.message = None;
            }
            KeyCode::Char('s') => self.open_scale(),
            KeyCode::Char('c') => self.open_node(NodeOp::Cordon),
            KeyCode::Char('u') => self.open_node(NodeOp::Uncordon),
            KeyCode::Char('d') => self.open_node(NodeOp::Drain),
            KeyCode::Char('b') => {
                if self.bundle.as_ref().is_some_and(BundleState::running) {
                    self.refuse("a support bundle is being written");
                } else {
                    self.bundle = Some(BundleState::starting());
                    return Some(Action::Bundle);
                }
            }
            _ => {}
        }
        None
    }

    fn refuse(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            error: true,
        });
    }

    fn open_scale(&mut self) {
        if self.view != View::Volumes {
            return self.refuse("scale: select a volume in the Volumes view (2)");
        }
        let Some(v) = self.selected_volume() else {
            return self.refuse("scale: no volume selected");
        };
        let current = v.spec.num_replicas;
        let dialog = Dialog::Scale {
            volume: v.spec.uuid.clone(),
            current,
            target: current.saturating_add(1),
        };
        self.mode = Mode::Dialog(dialog);
    }

    fn open_node(&mut self, op: NodeOp) {
        if self.view != View::Nodes {
            return self.refuse(format!(
                "{}: select a node in the Nodes view (4)",
                op.verb().to_lowercase()
            ));
        }
        let Some(n) = self.selected_node() else {
            return self.refuse("no node selected");
        };
        let label = match op {
            NodeOp::Cordon => DEFAULT_CORDON_LABEL.to_string(),
            NodeOp::Drain => DEFAULT_DRAIN_LABEL.to_string(),
            NodeOp::Uncordon => match model::cordon_labels(n).first() {
                Some(l) => l.clone(),
                None => {
                    let text = format!("node {} is not cordoned", n.id);
                    return self.refuse(text);
                }
            },
        };
        let dialog = Dialog::Node {
            op,
            node: n.id.clone(),
            label,
        };
        self.mode = Mode::Dialog(dialog);
    }

    fn dialog_key(&mut self, mut dialog: Dialog, key: KeyEvent) -> Option<Action> {
        if key.code == KeyCode::Esc {
            self.mode = Mode::Normal;
            self.message = Some(Message {
                text: "cancelled".into(),
                error: false,
            });
            return None;
        }
        let action = match &mut dialog {
            Dialog::Scale {
                volume,
                current,
                target,
            } => match key.code {
                KeyCode::Up | KeyCode::Char('+') | KeyCode::Char('k') => {
                    *target = target.saturating_add(1);
                    None
                }
                KeyCode::Down | KeyCode::Char('-') | KeyCode::Char('j') => {
                    *target = target.saturating_sub(1).max(1);
                    None
                }
                KeyCode::Char(c @ '1'..='9') => {
                    *target = c as u8 - b'0';
                    None
                }
                KeyCode::Char('n') => {
                    self.mode = Mode::Normal;
                    self.message = Some(Message {
                        text: "cancelled".into(),
                        error: false,
                    });
                    return None;
                }
                KeyCode::Enter | KeyCode::Char('y') => {
                    if target == current {
                        self.mode = Mode::Normal;
                        self.refuse(format!(
                            "volume {} already has {current} replicas",
                            short_id(volume)
                        ));
                        return None;
                    }
                    Some(Action::Scale {
                        volume: volume.clone(),
                        replicas: *target,
                    })
                }
                _ => None,
            },
            Dialog::Node { op, node, label } => match key.code {
                KeyCode::Char(c)
                    if !c.is_control()
                        && !c.is_whitespace()
                        && c != '/'
                        && label.chars().count() < MAX_INPUT_CHARS =>
                {
                    label.push(c);
                    None
                }
                KeyCode::Backspace => {
                    label.pop();
                    None
                }
                KeyCode::Enter if !label.is_empty() => {
                    let (node, label) = (node.clone(), label.clone());
                    Some(match op {
                        NodeOp::Cordon => Action::Cordon { node, label },
                        NodeOp::Uncordon => Action::Uncordon { node, label },
                        NodeOp::Drain => Action::Drain { node, label },
                    })
                }
                _ => None,
            },
        };
        match action {
            Some(action) => {
                self.mode = Mode::Normal;
                self.in_flight += 1;
                self.message = Some(Message {
                    text: format!("{}...", action.describe()),
                    error: false,
                });
                Some(action)
            }
            None => {
                self.mode = Mode::Dialog(dialog);
                None
            }
        }
    }
}
