//! Who offers, who yields, and what to do with every description and candidate: the "perfect
//! negotiation" pattern as a pure state machine. It takes inputs (a peer arrived, a signal came,
//! a local description was set, one failed) and returns `Action`s for the session to carry out on
//! the PeerConnection, then tells it the result. No I/O and no WebRTC types, so every ordering
//! (glare, both join orders, candidates before descriptions, a malformed description) is a unit
//! test.
//!
//! Roles: the newer peer (higher id) is *polite*: when both offer at once it rolls its own offer
//! back and answers; the older one ignores the colliding offer and waits for the answer to its own.
//! When a connected call drops, the older peer restarts ICE first (`RESTART_AFTER` in
//! `Disconnected`, at once on `Failed` or when the machine's addresses change); the newer one
//! only if that did not bring it back, so the two rarely collide (and glare handles it if they do).
//!
//! Signaling can lose a message: one written into a socket that died before anyone noticed (a
//! changed address, a restarting server). An offer unanswered for `OFFER_RESEND`, or when the
//! signaling connection comes back, is sent again as it is; an answer to either copy answers it,
//! so no late answer can be mistaken for one to a newer offer. A restart that falls due while our
//! offer is unanswered sends that offer again instead of queueing a new one behind it (else an
//! older side whose offer was lost ignores the newer side's offers forever, and both wait).

use std::time::{Duration, Instant};

use confab_protocol::{PeerId, SignalPayload};

use super::description;
/// How long a dropped connection may try to come back by itself before the older peer restarts
/// ICE (a short outage heals without one; a changed address never does).
pub const RESTART_AFTER: Duration = Duration::from_millis(2500);
/// A restart that has not connected again after this long is tried again (with fresh
/// candidates: the network may have changed once more, or come back).
pub const RESTART_RETRY: Duration = Duration::from_secs(4);
/// A connection down this long (restarts included) ends the call.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(30);
/// An offer with no answer after this long is sent again: it (or its answer) was most likely
/// lost with a signaling socket that died before anyone noticed. Answering takes a peer tens of
/// milliseconds, a browser well under a second.
pub const OFFER_RESEND: Duration = Duration::from_secs(3);

/// The connection as far as restarts go (the PeerConnection's state, once it has connected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Connected,
    /// No traffic for a while; may come back by itself.
    Disconnected,
    /// ICE gave up on every pair.
    Failed,
}

/// An ICE candidate as it travels (the browser's `RTCIceCandidateInit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub candidate: String,
    pub sdp_mid: Option<String>,
    pub sdp_mline_index: Option<u16>,
}

impl Candidate {
    fn payload(self) -> SignalPayload {
        SignalPayload::Candidate {
            candidate: self.candidate,
            sdp_mid: self.sdp_mid,
            sdp_mline_index: self.sdp_mline_index,
        }
    }
}

/// What the session must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create an offer and set it as the local description, then call `local_offer_set` (or
    /// `local_description_failed`).
    MakeOffer,
    /// Roll our unanswered offer back (we are polite and theirs collided with ours).
    Rollback,
    /// Set this offer as the remote description, then call `remote_description_set` (or
    /// `remote_description_failed`); on success create an answer, set it, and call
    /// `local_answer_set`.
    AcceptOffer(String),
    /// Set this answer as the remote description, then call `remote_description_set` (or
    /// `remote_description_failed`).
    AcceptAnswer(String),
    /// Add a remote candidate (the remote description is set).
    AddCandidate(Candidate),
    /// Send this to the other peer through the signaling server.
    Send(PeerId, SignalPayload),
    /// The other peer said goodbye.
    PeerLeft,
    /// Something the person should hear about; the call goes on.
    Notice(String),
    /// Restart ICE: the next offer (the `MakeOffer` that follows, now or once the exchange under
    /// way is done) carries new credentials, and fresh candidates are gathered.
    RestartIce,
    /// The connection stayed down for `GIVE_UP_AFTER`: end the call.
    GiveUp,
    /// Send our offer again, as the local description is now (with the candidates gathered
    /// since): it has had no answer for `OFFER_RESEND`. The same offer, so an answer to either
    /// copy answers it, and a peer that did answer the first copy answers the second alike.
    ResendOffer,
}

/// Where the offer/answer exchange stands (the PeerConnection's signaling state, as far as
/// negotiation needs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exchange {
    Stable,
    /// `MakeOffer` was handed out and its result is not in yet.
    MakingOffer,
    /// Our offer is set and sent; waiting for the answer.
    HaveLocalOffer,
    /// `AcceptOffer` was handed out; the answer is not sent yet.
    Answering,
    /// `AcceptAnswer` was handed out and its result is not in yet.
    ApplyingAnswer,
}

#[derive(Debug)]
pub struct Negotiator {
    me: PeerId,
    remote: Option<PeerId>,
    exchange: Exchange,
    /// A remote description has been set at least once, so remote candidates can be added.
    has_remote_description: bool,
    /// Remote candidates that came before a remote description.
    remote_pending: Vec<Candidate>,
    /// Local candidates gathered before we knew whom to send them to.
    local_pending: Vec<Candidate>,
    /// An offer was asked for while another exchange was under way: make it when stable.
    offer_wanted: bool,
    /// The person heard that the other side sends no H.264 video.
    told_no_h264: bool,
    /// Since when the connection has been down (after it first connected).
    down_since: Option<Instant>,
    /// The connection failed (not merely disconnected) since it was last up.
    failed: bool,
    /// When we last restarted ICE while it is down.
    last_restart: Option<Instant>,
    /// When our unanswered offer was last sent (in `HaveLocalOffer`).
    offer_sent: Option<Instant>,
    /// The machine has no address to connect from: restarts wait for one.
    offline: bool,
}

/// The notice for a peer whose video we cannot decode (a VP8-only browser).
pub const NO_H264: &str = "the other side sends no H.264 video";

impl Negotiator {
    pub fn new(me: PeerId) -> Self {
        Self {
            me,
            remote: None,
            exchange: Exchange::Stable,
            has_remote_description: false,
            remote_pending: Vec::new(),
            local_pending: Vec::new(),
            offer_wanted: false,
            told_no_h264: false,
            down_since: None,
            failed: false,
            last_restart: None,
            offer_sent: None,
            offline: false,
        }
    }

    /// The connection changed state at `now` (only after it first connected: before that, a
    /// failure ends the call with its reason).
    pub fn link_changed(&mut self, link: Link, now: Instant) -> Vec<Action> {
        match link {
            Link::Connected => {
                self.down_since = None;
                self.failed = false;
                self.last_restart = None;
                Vec::new()
            }
            Link::Disconnected => {
                self.down_since.get_or_insert(now);
                self.tick(now)
            }
            Link::Failed => {
                self.down_since.get_or_insert(now);
                self.failed = true;
                self.tick(now)
            }
        }
    }

    /// The machine's addresses changed (an interface went away or came up): the candidates we
    /// gave are stale, so restart at once, whichever side we are. `offline`: it has none left
    /// (between two networks): no restart until one comes, since a restart then has nothing to
    /// gather on (and webrtc-rs ends the connection when its new sockets find no interface).
    pub fn addresses_changed(&mut self, now: Instant, offline: bool) -> Vec<Action> {
        self.offline = offline;
        if self.remote.is_none() || !self.has_remote_description {
            return Vec::new();
        }
        self.down_since.get_or_insert(now);
        if offline {
            return Vec::new();
        }
        self.restart(now)
    }

    /// Time passed: restart ICE when it is our turn, give up when it has been down too long,
    /// send an offer again that has waited too long for its answer.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        if self.remote.is_none() {
            return Vec::new();
        }
        let Some(since) = self.down_since else {
            return self.resend_unanswered(now, OFFER_RESEND);
        };
        if now.duration_since(since) >= GIVE_UP_AFTER {
            return vec![Action::GiveUp];
        }
        let due = match self.last_restart {
            Some(at) => at + RESTART_RETRY,
            // The older peer goes first; the newer one steps in only if that did not help.
            None if self.polite() => since + RESTART_AFTER + RESTART_RETRY,
            None if self.failed => since,
            None => since + RESTART_AFTER,
        };
        if now < due || self.offline {
            return self.resend_unanswered(now, OFFER_RESEND);
        }
        if self.exchange == Exchange::HaveLocalOffer {
            // Our last restart's offer is still unanswered: a new restart would only queue
            // behind it, so send that one again instead.
            self.last_restart = Some(now);
            return self.resend_unanswered(now, Duration::ZERO);
        }
        self.restart(now)
    }

    /// A signaling connection is back after a drop, ours or the other peer's (the server says
    /// `peer_back`): an offer sent before may have gone into the dead socket, so send it again
    /// now rather than after `OFFER_RESEND`.
    pub fn signaling_back(&mut self, now: Instant) -> Vec<Action> {
        self.resend_unanswered(now, Duration::ZERO)
    }

    /// `ResendOffer` when our offer has been unanswered for `after`.
    fn resend_unanswered(&mut self, now: Instant, after: Duration) -> Vec<Action> {
        match self.offer_sent {
            Some(sent) if self.exchange == Exchange::HaveLocalOffer && now >= sent + after => {
                self.offer_sent = Some(now);
                vec![Action::ResendOffer]
            }
            _ => Vec::new(),
        }
    }

    fn restart(&mut self, now: Instant) -> Vec<Action> {
        self.last_restart = Some(now);
        let mut actions = vec![Action::RestartIce];
        actions.extend(self.offer_needed());
        actions
    }

    /// The peer we negotiate with, once known.
    pub fn remote(&self) -> Option<PeerId> {
        self.remote
    }

    /// Whether we yield in a collision (we are the newer peer).
    pub fn polite(&self) -> bool {
        self.remote.is_some_and(|r| self.me > r)
    }

    /// A peer is in the room with us. `offer`: we start the exchange (we arrived second, or we
    /// are asked to offer eagerly). Returns nothing when we already have a peer.
    pub fn peer_arrived(&mut self, id: PeerId, offer: bool) -> Vec<Action> {
        if self.remote.is_some_and(|r| r != id) {
            return Vec::new();
        }
        let mut actions = self.set_remote(id);
        if offer {
            actions.extend(self.offer_needed());
        }
        actions
    }

    /// The session wants a (new) offer: at the start, or to renegotiate.
    pub fn offer_needed(&mut self) -> Vec<Action> {
        if self.remote.is_none() {
            return Vec::new();
        }
        if self.exchange != Exchange::Stable {
            self.offer_wanted = true;
            return Vec::new();
        }
        self.exchange = Exchange::MakingOffer;
        vec![Action::MakeOffer]
    }

    /// A message from a peer through the signaling server.
    pub fn on_signal(&mut self, from: PeerId, payload: SignalPayload) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.remote.is_none() {
            actions.extend(self.set_remote(from));
        }
        if Some(from) != self.remote {
            return actions;
        }
        match payload {
            SignalPayload::Offer { sdp } => actions.extend(self.on_offer(sdp)),
            SignalPayload::Answer { sdp } => actions.extend(self.on_answer(sdp)),
            SignalPayload::Candidate {
                candidate,
                sdp_mid,
                sdp_mline_index,
            } => {
                let candidate = Candidate {
                    candidate,
                    sdp_mid,
                    sdp_mline_index,
                };
                if self.has_remote_description {
                    actions.push(Action::AddCandidate(candidate));
                } else {
                    self.remote_pending.push(candidate);
                }
            }
            SignalPayload::EndOfCandidates => {}
            SignalPayload::Bye => actions.push(Action::PeerLeft),
            SignalPayload::DescriptionError { message } => {
                // Our offer cannot be used there: sending it again would not help.
                self.offer_sent = None;
                // Their words, shown to the person: one short line of printable text.
                let message: String = message
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect();
                actions.push(Action::Notice(format!("the other side says: {message}")));
            }
        }
        actions
    }

    fn on_offer(&mut self, sdp: String) -> Vec<Action> {
        let collision = matches!(
            self.exchange,
            Exchange::MakingOffer | Exchange::HaveLocalOffer
        );
        if collision && !self.polite() {
            tracing::debug!("offer collision: keeping ours");
            return Vec::new();
        }
        let mut actions = Vec::new();
        if collision {
            tracing::debug!("offer collision: rolling back ours");
            // Ours is gone. Both sides offer the same media, so their offer covers ours and
            // no second exchange is needed (webrtc-rs attaches our tracks to their sections).
            actions.push(Action::Rollback);
        }
        self.exchange = Exchange::Answering;
        let sdp = self.screen(sdp, false, &mut actions);
        actions.push(Action::AcceptOffer(sdp));
        actions
    }

    /// A remote description as the PeerConnection can take it, and a notice the first time it
    /// carries video we cannot decode, or (an answer) rejects our H.264 video (see
    /// `description::screen`).
    fn screen(&mut self, sdp: String, answer: bool, actions: &mut Vec<Action>) -> String {
        let screened = description::screen(&sdp);
        let no_h264 = screened.video_without_h264 || (answer && screened.video_rejected);
        if no_h264 && !self.told_no_h264 {
            self.told_no_h264 = true;
            actions.push(Action::Notice(NO_H264.into()));
        }
        screened.sdp
    }

    fn on_answer(&mut self, sdp: String) -> Vec<Action> {
        if self.exchange != Exchange::HaveLocalOffer {
            tracing::debug!("ignoring an answer we did not ask for");
            return Vec::new();
        }
        self.exchange = Exchange::ApplyingAnswer;
        let mut actions = Vec::new();
        let sdp = self.screen(sdp, true, &mut actions);
        actions.push(Action::AcceptAnswer(sdp));
        actions
    }

    /// Our offer is the local description now (at `now`); send it.
    pub fn local_offer_set(&mut self, sdp: String, now: Instant) -> Vec<Action> {
        if self.exchange != Exchange::MakingOffer {
            // A colliding offer was accepted meanwhile (we rolled back): this one is stale.
            return Vec::new();
        }
        self.exchange = Exchange::HaveLocalOffer;
        self.offer_sent = Some(now);
        self.send(SignalPayload::Offer { sdp })
    }

    /// Our offer as the local description is now (`ResendOffer`): send it again if it is still
    /// unanswered.
    pub fn resend_offer(&mut self, sdp: String) -> Vec<Action> {
        if self.exchange != Exchange::HaveLocalOffer {
            return Vec::new();
        }
        self.send(SignalPayload::Offer { sdp })
    }

    /// The remote description (offer or answer) is set: add the candidates that waited for it.
    pub fn remote_description_set(&mut self) -> Vec<Action> {
        self.has_remote_description = true;
        let mut actions: Vec<Action> = std::mem::take(&mut self.remote_pending)
            .into_iter()
            .map(Action::AddCandidate)
            .collect();
        if self.exchange == Exchange::ApplyingAnswer {
            self.exchange = Exchange::Stable;
            actions.extend(self.pending_offer());
        }
        actions
    }

    /// Our answer is the local description now; send it.
    pub fn local_answer_set(&mut self, sdp: String) -> Vec<Action> {
        if self.exchange != Exchange::Answering {
            return Vec::new();
        }
        self.exchange = Exchange::Stable;
        let mut actions = self.send(SignalPayload::Answer { sdp });
        actions.extend(self.pending_offer());
        actions
    }

    /// The remote description could not be set (malformed, or no common ground): tell the person,
    /// and go back to where we were; the call goes on.
    pub fn remote_description_failed(&mut self, reason: &str) -> Vec<Action> {
        let what = match self.exchange {
            Exchange::ApplyingAnswer => {
                self.exchange = Exchange::HaveLocalOffer;
                "answer"
            }
            _ => {
                self.exchange = Exchange::Stable;
                "offer"
            }
        };
        let mut actions = vec![Action::Notice(format!(
            "the other side sent an {what} that cannot be used ({reason})"
        ))];
        // Tell them too, so that their side does not wait in silence.
        actions.extend(self.send(SignalPayload::DescriptionError {
            message: format!("your {what} cannot be used ({reason})"),
        }));
        if self.exchange == Exchange::Stable {
            actions.extend(self.pending_offer());
        }
        actions
    }

    /// Making or setting our own description failed.
    pub fn local_description_failed(&mut self, reason: &str) -> Vec<Action> {
        self.exchange = Exchange::Stable;
        vec![Action::Notice(format!(
            "could not prepare the connection ({reason})"
        ))]
    }

    /// A candidate of ours, to trickle to the peer.
    pub fn local_candidate(&mut self, candidate: Candidate) -> Vec<Action> {
        match self.remote {
            Some(_) => self.send(candidate.payload()),
            None => {
                self.local_pending.push(candidate);
                Vec::new()
            }
        }
    }

    /// We gathered every candidate we will.
    pub fn gathering_complete(&mut self) -> Vec<Action> {
        self.send(SignalPayload::EndOfCandidates)
    }

    /// We hang up: the goodbye to send, if there is anyone to tell.
    pub fn hang_up(&mut self) -> Vec<Action> {
        self.send(SignalPayload::Bye)
    }

    fn set_remote(&mut self, id: PeerId) -> Vec<Action> {
        if self.remote.is_some() {
            return Vec::new();
        }
        self.remote = Some(id);
        std::mem::take(&mut self.local_pending)
            .into_iter()
            .map(|c| Action::Send(id, c.payload()))
            .collect()
    }

    fn send(&self, payload: SignalPayload) -> Vec<Action> {
        self.remote
            .map(|to| Action::Send(to, payload))
            .into_iter()
            .collect()
    }

    fn pending_offer(&mut self) -> Vec<Action> {
        if std::mem::take(&mut self.offer_wanted) {
            self.offer_needed()
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: PeerId = PeerId(1);
    const NEW: PeerId = PeerId(2);

    fn offer(sdp: &str) -> SignalPayload {
        SignalPayload::Offer { sdp: sdp.into() }
    }

    fn answer(sdp: &str) -> SignalPayload {
        SignalPayload::Answer { sdp: sdp.into() }
    }

    fn cand(n: u32) -> Candidate {
        Candidate {
            candidate: format!("candidate:{n} 1 udp 1 127.0.0.1 {n} typ host"),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
        }
    }

    fn cand_payload(n: u32) -> SignalPayload {
        cand(n).payload()
    }

    /// Two negotiators wired together: the actions of one become the inputs of the other, and
    /// the PeerConnection's part (setting descriptions) always succeeds.
    struct Pair {
        sides: [Negotiator; 2],
        /// Messages in flight, per receiving side.
        wire: [Vec<SignalPayload>; 2],
        /// The remote description each side ended up with.
        remote_sdp: [Option<String>; 2],
        added: [Vec<Candidate>; 2],
        /// The time the sides are told (offers are stamped with it).
        now: Instant,
    }

    impl Pair {
        fn new() -> Self {
            Self {
                sides: [Negotiator::new(OLD), Negotiator::new(NEW)],
                wire: [Vec::new(), Vec::new()],
                remote_sdp: [None, None],
                added: [Vec::new(), Vec::new()],
                now: Instant::now(),
            }
        }

        /// Carries out `actions` for side `i` the way the session does.
        fn run(&mut self, i: usize, mut actions: Vec<Action>) {
            while !actions.is_empty() {
                let mut next = Vec::new();
                for action in actions {
                    match action {
                        Action::MakeOffer => next.extend(
                            self.sides[i].local_offer_set(format!("offer-from-{i}"), self.now),
                        ),
                        // The local description is still the offer made last.
                        Action::ResendOffer => {
                            next.extend(self.sides[i].resend_offer(format!("offer-from-{i}")))
                        }
                        Action::Rollback => {}
                        Action::AcceptOffer(sdp) => {
                            self.remote_sdp[i] = Some(sdp);
                            next.extend(self.sides[i].remote_description_set());
                            next.extend(self.sides[i].local_answer_set(format!("answer-from-{i}")));
                        }
                        Action::AcceptAnswer(sdp) => {
                            self.remote_sdp[i] = Some(sdp);
                            next.extend(self.sides[i].remote_description_set());
                        }
                        Action::AddCandidate(c) => self.added[i].push(c),
                        Action::Send(_, payload) => self.wire[1 - i].push(payload),
                        Action::PeerLeft
                        | Action::Notice(_)
                        | Action::RestartIce
                        | Action::GiveUp => {}
                    }
                }
                actions = next;
            }
        }

        /// Delivers everything in flight until the wire is quiet.
        fn settle(&mut self) {
            for _ in 0..20 {
                if self.wire.iter().all(Vec::is_empty) {
                    return;
                }
                for i in 0..2 {
                    let from = if i == 0 { NEW } else { OLD };
                    for payload in std::mem::take(&mut self.wire[i]) {
                        let actions = self.sides[i].on_signal(from, payload);
                        self.run(i, actions);
                    }
                }
            }
            panic!("negotiation never settled");
        }

        fn assert_negotiated(&self) {
            assert_eq!(self.sides[0].exchange, Exchange::Stable);
            assert_eq!(self.sides[1].exchange, Exchange::Stable);
            let offers = self
                .remote_sdp
                .iter()
                .filter(|s| s.as_deref().is_some_and(|s| s.starts_with("offer")))
                .count();
            let answers = self
                .remote_sdp
                .iter()
                .filter(|s| s.as_deref().is_some_and(|s| s.starts_with("answer")))
                .count();
            assert_eq!(
                (offers, answers),
                (1, 1),
                "one side holds an offer, the other its answer: {:?}",
                self.remote_sdp
            );
        }
    }

    #[test]
    fn the_second_to_arrive_offers_and_the_first_answers() {
        // Either join order: whoever arrives second sees the other in the room and offers.
        for newcomer in [0, 1] {
            let mut pair = Pair::new();
            let other = if newcomer == 0 { NEW } else { OLD };
            let actions = pair.sides[newcomer].peer_arrived(other, true);
            assert_eq!(actions, vec![Action::MakeOffer]);
            pair.run(newcomer, actions);
            let me = if newcomer == 0 { OLD } else { NEW };
            let actions = pair.sides[1 - newcomer].peer_arrived(me, false);
            assert!(actions.is_empty(), "the first to arrive waits: {actions:?}");
            pair.settle();
            pair.assert_negotiated();
            assert_eq!(
                pair.remote_sdp[1 - newcomer].as_deref(),
                Some(format!("offer-from-{newcomer}").as_str())
            );
        }
    }

    #[test]
    fn glare_the_polite_side_rolls_back_and_answers() {
        let mut pair = Pair::new();
        // Both offer at the same instant.
        let a = pair.sides[0].peer_arrived(NEW, true);
        let b = pair.sides[1].peer_arrived(OLD, true);
        pair.run(0, a);
        pair.run(1, b);
        assert!(!pair.sides[0].polite() && pair.sides[1].polite());
        // The older side ignores the colliding offer...
        let to_old = std::mem::take(&mut pair.wire[0]);
        assert_eq!(to_old, vec![offer("offer-from-1")]);
        assert!(pair.sides[0].on_signal(NEW, to_old[0].clone()).is_empty());
        // ...the newer one rolls back and answers the older one's offer.
        let to_new = std::mem::take(&mut pair.wire[1]);
        let actions = pair.sides[1].on_signal(OLD, to_new[0].clone());
        assert_eq!(
            actions,
            vec![Action::Rollback, Action::AcceptOffer("offer-from-0".into())]
        );
        pair.run(1, actions);
        pair.settle();
        // The older side's offer won, and one exchange settled it.
        pair.assert_negotiated();
        assert_eq!(pair.remote_sdp[0].as_deref(), Some("answer-from-1"));
        assert_eq!(pair.remote_sdp[1].as_deref(), Some("offer-from-0"));
    }

    #[test]
    fn candidates_before_the_description_wait_for_it() {
        let mut n = Negotiator::new(OLD);
        n.peer_arrived(NEW, false);
        assert!(n.on_signal(NEW, cand_payload(1)).is_empty());
        assert!(n.on_signal(NEW, cand_payload(2)).is_empty());
        assert_eq!(
            n.on_signal(NEW, offer("o")),
            vec![Action::AcceptOffer("o".into())]
        );
        assert_eq!(
            n.remote_description_set(),
            vec![Action::AddCandidate(cand(1)), Action::AddCandidate(cand(2))]
        );
        // After the description, candidates go straight in.
        assert_eq!(
            n.on_signal(NEW, cand_payload(3)),
            vec![Action::AddCandidate(cand(3))]
        );
        assert_eq!(
            n.local_answer_set("a".into()),
            vec![Action::Send(NEW, answer("a"))]
        );
    }

    #[test]
    fn local_candidates_wait_until_the_peer_is_known() {
        let mut n = Negotiator::new(NEW);
        assert!(n.local_candidate(cand(1)).is_empty());
        assert!(n.gathering_complete().is_empty());
        // The first message from the peer names it; our waiting candidate goes out at once.
        let actions = n.on_signal(OLD, offer("o"));
        assert_eq!(
            actions,
            vec![
                Action::Send(OLD, cand_payload(1)),
                Action::AcceptOffer("o".into())
            ]
        );
        assert_eq!(
            n.local_candidate(cand(2)),
            vec![Action::Send(OLD, cand_payload(2))]
        );
    }

    #[test]
    fn an_offer_asked_for_during_an_exchange_waits_for_it() {
        let mut n = Negotiator::new(OLD);
        assert_eq!(n.peer_arrived(NEW, true), vec![Action::MakeOffer]);
        // Renegotiation asked for while our first offer is still out: nothing yet.
        assert!(n.offer_needed().is_empty());
        assert_eq!(
            n.local_offer_set("o1".into(), Instant::now()),
            vec![Action::Send(NEW, offer("o1"))]
        );
        assert!(n.offer_needed().is_empty());
        assert_eq!(
            n.on_signal(NEW, answer("a1")),
            vec![Action::AcceptAnswer("a1".into())]
        );
        // The answer is in: now the waiting offer is made.
        assert_eq!(n.remote_description_set(), vec![Action::MakeOffer]);
    }

    #[test]
    fn stray_answers_and_strangers_are_ignored() {
        let mut n = Negotiator::new(OLD);
        n.peer_arrived(NEW, false);
        assert!(n.on_signal(NEW, answer("a")).is_empty(), "no offer of ours");
        assert!(
            n.on_signal(PeerId(9), offer("o")).is_empty(),
            "not our peer"
        );
        assert!(n.peer_arrived(PeerId(9), true).is_empty(), "one peer only");
        assert_eq!(n.remote(), Some(NEW));
    }

    #[test]
    fn a_malformed_description_is_a_notice_and_the_exchange_goes_on() {
        let mut n = Negotiator::new(OLD);
        n.peer_arrived(NEW, false);
        assert_eq!(
            n.on_signal(NEW, offer("garbage")),
            vec![Action::AcceptOffer("garbage".into())]
        );
        let actions = n.remote_description_failed("SdpInvalidSyntax");
        assert!(
            matches!(&actions[..], [Action::Notice(text), Action::Send(NEW, SignalPayload::DescriptionError { message })]
                if text.contains("offer") && text.contains("SdpInvalidSyntax") && message == "your offer cannot be used (SdpInvalidSyntax)"),
            "{actions:?}"
        );
        // A good offer afterwards is answered as usual.
        assert_eq!(
            n.on_signal(NEW, offer("good")),
            vec![Action::AcceptOffer("good".into())]
        );
        n.remote_description_set();
        assert_eq!(
            n.local_answer_set("a".into()),
            vec![Action::Send(NEW, answer("a"))]
        );

        // A bad answer leaves our offer standing, so a good answer can still complete it.
        let mut n = Negotiator::new(OLD);
        n.peer_arrived(NEW, true);
        n.local_offer_set("o".into(), Instant::now());
        n.on_signal(NEW, answer("bad"));
        n.remote_description_failed("bad");
        assert_eq!(
            n.on_signal(NEW, answer("good")),
            vec![Action::AcceptAnswer("good".into())]
        );
    }

    #[test]
    fn video_without_h264_is_a_notice_once_and_the_call_goes_on() {
        let vp8_only = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendrecv\r\na=rtpmap:96 VP8/90000\r\n";
        let screened = description::screen(vp8_only).sdp;
        let mut n = Negotiator::new(OLD);
        n.peer_arrived(NEW, false);
        assert_eq!(
            n.on_signal(NEW, offer(vp8_only)),
            vec![
                Action::Notice(NO_H264.into()),
                Action::AcceptOffer(screened.clone())
            ]
        );
        n.remote_description_set();
        n.local_answer_set("a".into());
        // A renegotiation says it no more.
        assert_eq!(
            n.on_signal(NEW, offer(vp8_only)),
            vec![Action::AcceptOffer(screened)]
        );

        // We offered; their answer rejects our video.
        let rejecting =
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 0 UDP/TLS/RTP/SAVPF 0\r\n";
        let mut n = Negotiator::new(OLD);
        n.peer_arrived(NEW, true);
        n.local_offer_set("o".into(), Instant::now());
        assert_eq!(
            n.on_signal(NEW, answer(rejecting)),
            vec![
                Action::Notice(NO_H264.into()),
                Action::AcceptAnswer(rejecting.into())
            ]
        );
    }

    #[test]
    fn their_complaint_about_our_description_is_a_short_notice() {
        let mut n = Negotiator::new(OLD);
        n.peer_arrived(NEW, true);
        let message = format!("bad\u{1b}[31m{}", "x".repeat(500));
        let actions = n.on_signal(NEW, SignalPayload::DescriptionError { message });
        assert!(
            matches!(&actions[..], [Action::Notice(text)] if text.starts_with("the other side says: bad[31mxxx") && text.chars().count() == "the other side says: ".len() + 200),
            "{actions:?}"
        );
    }

    #[test]
    fn goodbye_and_hang_up() {
        let mut n = Negotiator::new(OLD);
        assert!(n.hang_up().is_empty(), "nobody to tell");
        n.peer_arrived(NEW, false);
        assert_eq!(n.hang_up(), vec![Action::Send(NEW, SignalPayload::Bye)]);
        assert_eq!(n.on_signal(NEW, SignalPayload::Bye), vec![Action::PeerLeft]);
    }

    fn connected_pair() -> Pair {
        let mut pair = Pair::new();
        let actions = pair.sides[1].peer_arrived(OLD, true);
        pair.run(1, actions);
        pair.sides[0].peer_arrived(NEW, false);
        pair.settle();
        pair.assert_negotiated();
        pair
    }

    /// When each side restarts after the connection drops at `t0`, as (ms after t0, actions).
    fn restarts(n: &mut Negotiator, link: Link, t0: Instant) -> Vec<(u64, Vec<Action>)> {
        let mut seen = Vec::new();
        let first = n.link_changed(link, t0);
        if !first.is_empty() {
            seen.push((0, first));
        }
        for ms in (100..=12_000).step_by(100) {
            let actions = n.tick(t0 + Duration::from_millis(ms));
            if !actions.is_empty() {
                seen.push((ms, actions));
            }
        }
        seen
    }

    #[test]
    fn after_a_drop_the_older_side_restarts_first_and_retries() {
        let restart = vec![Action::RestartIce, Action::MakeOffer];
        let t0 = Instant::now();
        // The older side: 2.5 s after a disconnect, then every 4 s while it stays down.
        let mut pair = connected_pair();
        let seen = restarts(&mut pair.sides[0], Link::Disconnected, t0);
        let times: Vec<u64> = seen.iter().map(|(ms, _)| *ms).collect();
        assert_eq!(times, vec![2_500, 6_500, 10_500]);
        assert_eq!(seen[0].1, restart);
        // The retries wait for the exchange under way: the offer is made when it is done.
        assert_eq!(seen[1].1, vec![Action::RestartIce]);

        // The newer side waits for the older one's restart to have had its chance.
        let mut pair = connected_pair();
        let seen = restarts(&mut pair.sides[1], Link::Disconnected, t0);
        assert_eq!(seen.first().map(|(ms, _)| *ms), Some(6_500));
        assert_eq!(seen[0].1, restart);

        // A failure restarts the older side at once.
        let mut pair = connected_pair();
        let seen = restarts(&mut pair.sides[0], Link::Failed, t0);
        assert_eq!(seen.first(), Some(&(0, restart.clone())));
    }

    #[test]
    fn a_restart_is_an_ordinary_exchange_and_reconnecting_stops_it() {
        let t0 = Instant::now();
        let mut pair = connected_pair();
        let actions = pair.sides[0].link_changed(Link::Disconnected, t0);
        assert!(actions.is_empty(), "not yet: {actions:?}");
        let actions = pair.sides[0].tick(t0 + RESTART_AFTER);
        assert_eq!(actions, vec![Action::RestartIce, Action::MakeOffer]);
        pair.run(0, actions);
        pair.settle();
        assert_eq!(pair.remote_sdp[1].as_deref(), Some("offer-from-0"));
        assert_eq!(pair.remote_sdp[0].as_deref(), Some("answer-from-1"));
        // Connected again: no more restarts, however long we wait.
        assert!(pair.sides[0]
            .link_changed(Link::Connected, t0 + Duration::from_secs(3))
            .is_empty());
        assert!(pair.sides[0].tick(t0 + Duration::from_secs(20)).is_empty());
    }

    #[test]
    fn both_restarting_at_once_settles_like_glare() {
        let t0 = Instant::now();
        let mut pair = connected_pair();
        // Both see their addresses change at the same instant.
        let a = pair.sides[0].addresses_changed(t0, false);
        let b = pair.sides[1].addresses_changed(t0, false);
        assert_eq!(a, vec![Action::RestartIce, Action::MakeOffer]);
        assert_eq!(b, vec![Action::RestartIce, Action::MakeOffer]);
        pair.run(0, a);
        pair.run(1, b);
        pair.settle();
        assert_eq!(pair.remote_sdp[1].as_deref(), Some("offer-from-0"));
        assert_eq!(pair.remote_sdp[0].as_deref(), Some("answer-from-1"));
    }

    #[test]
    fn an_offer_or_answer_lost_on_the_way_is_made_good_by_sending_the_offer_again() {
        let mut pair = Pair::new();
        let t0 = pair.now;
        let actions = pair.sides[1].peer_arrived(OLD, true);
        pair.run(1, actions);
        pair.sides[0].peer_arrived(NEW, false);
        pair.wire[0].clear(); // the offer is lost
        assert!(pair.sides[1]
            .tick(t0 + OFFER_RESEND - Duration::from_millis(1))
            .is_empty());
        let actions = pair.sides[1].tick(t0 + OFFER_RESEND);
        assert_eq!(actions, vec![Action::ResendOffer]);
        pair.run(1, actions);
        // This time the offer arrives, and its answer is lost.
        let to_old = std::mem::take(&mut pair.wire[0]);
        for payload in to_old {
            let actions = pair.sides[0].on_signal(NEW, payload);
            pair.run(0, actions);
        }
        assert_eq!(pair.wire[1], vec![answer("answer-from-0")]);
        pair.wire[1].clear();
        // Another wait, another copy; the side that answered already answers it again.
        assert!(pair.sides[1]
            .tick(t0 + OFFER_RESEND * 2 - Duration::from_millis(1))
            .is_empty());
        let actions = pair.sides[1].tick(t0 + OFFER_RESEND * 2);
        assert_eq!(actions, vec![Action::ResendOffer]);
        pair.run(1, actions);
        pair.settle();
        pair.assert_negotiated();
        // Answered: nothing more is sent, however long we wait.
        assert!(pair.sides[1].tick(t0 + Duration::from_secs(60)).is_empty());
        assert!(pair.sides[0].tick(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn an_offer_is_sent_again_when_either_side_is_back_on_signaling() {
        let mut n = Negotiator::new(OLD);
        let t0 = Instant::now();
        assert!(n.signaling_back(t0).is_empty(), "no peer, no offer");
        n.peer_arrived(NEW, true);
        n.local_offer_set("o".into(), t0);
        assert_eq!(
            n.signaling_back(t0 + Duration::from_millis(10)),
            vec![Action::ResendOffer]
        );
        n.on_signal(NEW, answer("a"));
        n.remote_description_set();
        assert!(n.signaling_back(t0 + Duration::from_secs(1)).is_empty());
    }

    /// The failure seen once with a browser: the connection drops while signaling is out too;
    /// the older side's restart offer is lost, and the newer side's offer then collides with the
    /// older side's unanswered one, which the older side keeps. Each side must send its offer
    /// again (not queue a restart behind it) until one gets through.
    #[test]
    fn restart_offers_lost_while_signaling_is_out_do_not_leave_both_sides_waiting() {
        for signaling_back_ms in [3_000, 7_000, 12_000] {
            let mut pair = connected_pair();
            let t0 = pair.now;
            for i in 0..2 {
                let actions = pair.sides[i].link_changed(Link::Disconnected, t0);
                pair.run(i, actions);
            }
            let mut offers_lost = 0;
            for ms in (100..=16_000).step_by(100) {
                pair.now = t0 + Duration::from_millis(ms);
                for i in 0..2 {
                    let actions = pair.sides[i].tick(pair.now);
                    pair.run(i, actions);
                }
                if ms < signaling_back_ms {
                    for wire in &mut pair.wire {
                        offers_lost += wire
                            .drain(..)
                            .filter(|p| matches!(p, SignalPayload::Offer { .. }))
                            .count();
                    }
                } else {
                    pair.settle();
                }
            }
            assert!(offers_lost >= 1, "the outage lost an offer");
            pair.settle();
            pair.assert_negotiated();
        }
    }

    #[test]
    fn no_restart_while_the_machine_has_no_address() {
        let t0 = Instant::now();
        let mut pair = connected_pair();
        // The old network's address went away before the new one came (a Wi-Fi switch).
        assert!(pair.sides[0].addresses_changed(t0, true).is_empty());
        for ms in (100..=10_000).step_by(100) {
            let actions = pair.sides[0].tick(t0 + Duration::from_millis(ms));
            assert!(actions.is_empty(), "at {ms} ms: {actions:?}");
        }
        // The new address: restart at once.
        let t1 = t0 + Duration::from_millis(10_050);
        assert_eq!(
            pair.sides[0].addresses_changed(t1, false),
            vec![Action::RestartIce, Action::MakeOffer]
        );
        // Still no way out after `GIVE_UP_AFTER` from the drop: the call ends.
        let mut pair = connected_pair();
        pair.sides[0].addresses_changed(t0, true);
        assert_eq!(pair.sides[0].tick(t0 + GIVE_UP_AFTER), vec![Action::GiveUp]);
    }

    #[test]
    fn a_connection_down_too_long_gives_up_and_none_restarts_before_connecting() {
        let t0 = Instant::now();
        let mut pair = connected_pair();
        pair.sides[1].link_changed(Link::Disconnected, t0);
        assert_ne!(
            pair.sides[1].tick(t0 + GIVE_UP_AFTER - Duration::from_millis(1)),
            vec![Action::GiveUp]
        );
        assert_eq!(pair.sides[1].tick(t0 + GIVE_UP_AFTER), vec![Action::GiveUp]);
        // Without a peer (or a description) there is nothing to restart.
        let mut alone = Negotiator::new(OLD);
        assert!(alone.addresses_changed(t0, false).is_empty());
        assert!(alone.tick(t0 + Duration::from_secs(10)).is_empty());
    }
}
