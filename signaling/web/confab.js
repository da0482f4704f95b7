// The Confab web client: joins a room through the signaling server's WebSocket (`/ws`, the JSON
// protocol of protocol/src/messages.rs), negotiates one RTCPeerConnection with the other person
// the way the native app does (app/src/call/session.rs), and runs chat and file transfer on the two
// data channels (app/src/call/data.rs). Plain browser JavaScript, no build step, no downloads.
//
// Roles: whoever finds someone already in the room creates the data channels and offers; the one
// who was waiting answers. On an offer collision the peer with the higher id is polite (rolls
// back and answers) and the lower id ignores the incoming offer. ICE candidates trickle both ways;
// remote ones that arrive before the remote description are queued.
//
// For tests the page exposes `window.confab` (state, error, room, chatReceived, filesReceived,
// stats(), sendChat()); tests/web/browser_call.js drives it in headless Chromium.
//
// The pure helpers at the top (room codes, file names, SHA-256) have no DOM and are exported to
// Node as well, so they can be checked without a browser.

'use strict';

// ---- Constants shared with the Rust side ------------------------------------------------------

const PROTOCOL_VERSION = 1; // protocol::PROTOCOL_VERSION
const MAX_NAME_CHARS = 64; // protocol::MAX_NAME_CHARS
const CONTROL_LABEL = 'confab'; // data::CONTROL_LABEL: JSON chat and file handshake
const FILE_LABEL = 'confab-file'; // data::FILE_LABEL: binary chunks [u32 BE id][bytes]
const CHUNK_BYTES = 16 * 1024; // data::CHUNK_BYTES
const MAX_SCALE_DOWN = 16; // the most a `video_limit` ask scales our video down by
const LEAST_VIDEO = 320 * 180 * 20; // thread_load::MIN_ASK: what a hidden page asks for
// What a scaled-down picture is given at most, as the native sender gives a rung a cap holds
// down (media_send::VideoSender::encoder_bps, h264::default_bitrate_bps): bits a pixel, a floor.
const CAPPED_BITS_PER_PIXEL = 0.07;
const CAPPED_MIN_BPS = 150000;
const MAX_CONTROL_BYTES = 64 * 1024; // data::MAX_CONTROL_BYTES
const MAX_CHAT_CHARS = 4000; // data::MAX_CHAT_CHARS
/** Files are received into memory (a Blob), so the page refuses offers larger than this. */
const MAX_INCOMING_BYTES = 1024 * 1024 * 1024;
/** Offers waiting for an answer plus files arriving, at most (data_link::MAX_PENDING_FILES). */
const MAX_PENDING_FILES = 8;

/**
 * The bytes this page may hold in memory for files at once: MAX_INCOMING_BYTES, or a quarter of
 * the device's memory where the browser tells it (navigator.deviceMemory, in GiB).
 */
function incomingMemoryLimit() {
  const gib = typeof navigator !== 'undefined' && Number(navigator.deviceMemory);
  return gib > 0 ? Math.min(MAX_INCOMING_BYTES, Math.floor((gib * 2 ** 30) / 4)) : MAX_INCOMING_BYTES;
}

/** Bidi controls and zero-width characters: they change how a name reads without being seen. */
const INVISIBLE_IN_NAMES = /[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]/g;
/** Sending pauses while this much is queued on the file channel, and resumes below the low mark. */
const SEND_BUFFER_HIGH = 1024 * 1024;
const SEND_BUFFER_LOW = 256 * 1024;
/** Giving up on the server if `welcome` does not come within this long. */
const JOIN_TIMEOUT_MS = 10000;
/** Waits between attempts to get our seat back after the socket dropped; then the last, again. */
const RESUME_BACKOFF_MS = [100, 250, 500, 1000, 2000];
/** Attempts before the server is given up on (about a minute). */
const RESUME_ATTEMPTS = 35;
/** The page pings the server this often while in a room... */
const HEARTBEAT_MS = 5000;
/** ...and takes a socket that brought nothing back for this long for dead (as the native app does). */
const SILENCE_LIMIT_MS = 15000;
/** When the call's connection drops, a ping not answered within this long means the signaling
 *  socket died too (the network changed under it): a new one is made before the ICE restart. */
const PROBE_MS = 2000;
/** A connection that still says "connected" but has brought nothing (media, RTCP or consent
 *  checks) for this long gets the same check of the signaling socket as a dropped one: the
 *  browser may have moved to another network while staying online (no `online` event), and
 *  Chromium reports the connection down only ~7.6 s after the path died. */
const STALL_MS = 2000;
/** A dropped connection may come back by itself this long before the older peer restarts ICE. */
const RESTART_AFTER_MS = 2500;
/** A restart that has not connected again after this long is tried again. */
const RESTART_RETRY_MS = 4000;
/** A connection down this long (restarts included) ends the call. */
const GIVE_UP_MS = 30000;
/** An offer with no answer after this long is sent again (it, or its answer, may have gone into a
 *  signaling socket that died before anyone noticed), as the native app does. */
const OFFER_RESEND_MS = 3000;

/** What the server's error codes mean, for errors that come without a message. */
const SERVER_ERRORS = {
  room_full: 'This room is full.',
  bad_room_code: 'The server did not accept this room code.',
  version_mismatch: 'This page and the server speak different protocol versions; reload the page.',
  already_in_room: 'This connection is already in a room.',
  rate_limited: 'Too many messages too fast; the server is slowing this page down.',
  server_shutdown: 'The signaling server is shutting down.',
  too_large: 'A message was too large for the server.',
  bad_message: 'The server could not read a message from this page.',
  unknown_type: 'The server did not understand a message from this page.',
  unknown_peer: 'The other person is no longer in the room.',
  not_in_room: 'This page is not in a room (yet).',
};
/** Errors that mean the join itself failed (the others are reported and the call goes on). */
const FATAL_ERRORS = new Set(['room_full', 'bad_room_code', 'version_mismatch', 'already_in_room']);

// ---- Pure helpers --------------------------------------------------------------------------------

/**
 * Parses what a person typed or pasted, forgiving case, spaces, dashes, underscores, dots and a
 * link that ends in a code, exactly like `RoomCode::parse` in protocol/src/room_code.rs.
 * Returns `{ code: 'kfq-wmzt-pxd' }` or `{ error: 'why' }`.
 */
function parseRoomCode(input) {
  const trimmed = String(input).trim().replace(/\/+$/, '');
  // In a link the code is whatever follows the last separator of path, query or fragment.
  const parts = trimmed.split(/[/#=?&]/);
  const tail = parts[parts.length - 1];
  let letters = '';
  for (const c of tail) {
    if (c >= 'a' && c <= 'z') letters += c;
    else if (c >= 'A' && c <= 'Z') letters += c.toLowerCase();
    else if ('-_ \t.'.includes(c)) continue;
    else return { error: `a room code has only the letters a-z; "${input}" has "${c}"` };
  }
  if (letters.length !== 10) {
    return { error: `a room code is 10 letters like kfq-wmzt-pxd; "${input}" has ${letters.length} letters` };
  }
  return { code: `${letters.slice(0, 3)}-${letters.slice(3, 7)}-${letters.slice(7)}` };
}

/**
 * A file name safe to offer as a download: the last path component, no control or reserved
 * characters, no leading dots, at most 200 characters (the rules of `sanitize_file_name`).
 */
function sanitizeFileName(claimed) {
  const parts = String(claimed).replace(INVISIBLE_IN_NAMES, '').split(/[/\\]/);
  let name = Array.from(parts[parts.length - 1])
    .filter((c) => c.charCodeAt(0) >= 0x20 && c.charCodeAt(0) !== 0x7f && !'<>:"|?*'.includes(c))
    .join('')
    .trim()
    .replace(/^\.+/, '')
    .replace(/[. ]+$/, '');
  name = Array.from(name).slice(0, 200).join('');
  const stem = name.split('.')[0].toLowerCase();
  if (/^(con|prn|aux|nul|com[1-9]|lpt[1-9])$/.test(stem)) name = `_${name}`;
  return name || 'received-file';
}

const SHA256_K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/**
 * SHA-256 in plain JavaScript, for pages served over plain http from another machine: browsers
 * hide `crypto.subtle` outside secure contexts, and a file is kept only when its hash matches.
 */
function sha256Fallback(bytes) {
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const length = bytes.length;
  const padded = new Uint8Array(Math.ceil((length + 9) / 64) * 64);
  padded.set(bytes);
  padded[length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(length / 0x20000000)); // bits above 32
  view.setUint32(padded.length - 4, (length * 8) >>> 0);
  const w = new Uint32Array(64);
  for (let offset = 0; offset < padded.length; offset += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(offset + 4 * i);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + SHA256_K[i] + w[i]) | 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  return Array.from(h, (x) => x.toString(16).padStart(8, '0')).join('');
}

/** SHA-256 of `bytes` (an ArrayBuffer or Uint8Array) as lowercase hex. */
async function sha256Hex(bytes) {
  const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const subtle = typeof crypto !== 'undefined' && crypto.subtle;
  if (!subtle) return sha256Fallback(data);
  const digest = await subtle.digest('SHA-256', data);
  return Array.from(new Uint8Array(digest), (x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * The signaling URL: `?server=` when given (with `/ws` added to a bare host, like the native
 * `--server`), else the page's own host with ws:// or wss:// matching http:// or https://.
 */
function signalingUrl(location, params) {
  const override = params.get('server');
  if (override) {
    const url = new URL(override);
    if (url.pathname === '' || url.pathname === '/') url.pathname = '/ws';
    return url.toString();
  }
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

/** The room code the URL carries: `?room=CODE`, `#CODE` or a path ending in `/join/CODE`. */
function roomFromUrl(location, params) {
  const fromPath = /\/join\/([^/]+)\/?$/.exec(location.pathname);
  return params.get('room') || decodeURIComponent(location.hash.slice(1)) || (fromPath ? decodeURIComponent(fromPath[1]) : '');
}

/** Orders codec capabilities: H.264 constrained baseline (42e01f, packetization-mode 1) first,
 *  then other H.264 with packetization-mode 1, then the rest; repair codecs last. */
function preferH264(codecs) {
  const rank = (c) => {
    const mime = c.mimeType.toLowerCase();
    const fmtp = (c.sdpFmtpLine || '').toLowerCase();
    if (['video/rtx', 'video/red', 'video/ulpfec', 'video/flexfec-03'].includes(mime)) return 5;
    if (mime !== 'video/h264') return 4;
    if (!fmtp.includes('packetization-mode=1')) return 3;
    return fmtp.includes('profile-level-id=42e01f') ? 0 : fmtp.includes('profile-level-id=42') ? 1 : 2;
  };
  return codecs
    .map((codec, index) => ({ codec, index, rank: rank(codec) }))
    .sort((x, y) => x.rank - y.rank || x.index - y.index)
    .map((x) => x.codec);
}

/** Bytes as lowercase hex, and back (`null` unless exactly `n` bytes of hex). */
function toHex(bytes) {
  return Array.from(bytes, (x) => x.toString(16).padStart(2, '0')).join('');
}
function fromHex(text, n) {
  if (typeof text !== 'string' || text.length !== 2 * n || !/^[0-9a-fA-F]*$/.test(text)) return null;
  return Uint8Array.from(text.match(/../g) || [], (x) => parseInt(x, 16));
}

/** `sha-256 AB:CD:...` of a DER certificate, as SDP's a=fingerprint writes it. */
async function certificateFingerprint(der) {
  const hex = await sha256Hex(der);
  return `sha-256 ${hex.toUpperCase().match(/../g).join(':')}`;
}

/**
 * The first `a=fingerprint:sha-256` of an SDP (session level, else the first section's: the one a
 * BUNDLEd transport uses), normalized like `security::first_sha256_fingerprint`.
 */
function firstSha256Fingerprint(sdp) {
  for (const line of String(sdp).split(/\r?\n/)) {
    const m = /^a=fingerprint:(\S+)\s+(\S+)/.exec(line.trim());
    if (m && m[1].toLowerCase() === 'sha-256') return `sha-256 ${m[2].toUpperCase()}`;
  }
  return null;
}

/**
 * The security code, exactly like `security::security_code` in engine/src/security.rs: SHA-256
 * over both (fingerprint, nonce hex) pairs in sorted order, first 8 bytes mod 10^12, 4-4-4 digits.
 */
async function securityCode(localFp, localNonceHex, remoteFp, remoteNonceHex) {
  let pairs = [[localFp, localNonceHex], [remoteFp, remoteNonceHex]];
  const key = (p) => `${p[0]}\u0000${p[1]}`;
  // Rust compares the tuples field by field; the NUL keeps a shorter fingerprint first likewise.
  pairs.sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));
  const text = `confab-security-v2\n${pairs[0][0]}\n${pairs[0][1]}\n${pairs[1][0]}\n${pairs[1][1]}`;
  const hex = await sha256Hex(new TextEncoder().encode(text));
  const n = BigInt(`0x${hex.slice(0, 16)}`) % 1000000000000n;
  const digits = n.toString().padStart(12, '0');
  return `${digits.slice(0, 4)} ${digits.slice(4, 8)} ${digits.slice(8)}`;
}

/**
 * One side of the security code's commit-then-reveal exchange (`security::SasExchange`): send the
 * SHA-256 of a fresh random value first, reveal the value only once the other side's commitment
 * is in, and check its value against its commitment.
 */
class SasExchange {
  constructor(nonce) {
    this.nonce = nonce; // Uint8Array(32)
    this.committed = false;
    this.peerCommitment = null; // hex
    this.revealed = false;
    this.state = 'pending'; // pending | done | failed
    this.peerNonce = null; // hex, once done
    this.error = null;
  }

  async commit() {
    if (this.committed) return null;
    this.committed = true;
    return sha256Hex(this.nonce);
  }

  onCommit(hashHex) {
    if (this.state !== 'pending') return null;
    if (this.peerCommitment !== null) return this.failWith('the other side committed twice');
    if (!fromHex(hashHex, 32)) return this.failWith('the other side sent a malformed commitment');
    this.peerCommitment = hashHex.toLowerCase();
    return this.reveal();
  }

  reveal() {
    if (!this.committed || this.peerCommitment === null || this.revealed || this.state === 'failed') return null;
    this.revealed = true;
    return toHex(this.nonce);
  }

  async onReveal(nonceHex) {
    if (this.state !== 'pending') return;
    if (this.peerCommitment === null) return this.failWith('the other side revealed its value before committing to it');
    const theirs = fromHex(nonceHex, 32);
    if (!theirs) return this.failWith('the other side sent a malformed random value');
    if ((await sha256Hex(theirs)) !== this.peerCommitment) {
      return this.failWith("the other side's random value does not match its commitment");
    }
    this.state = 'done';
    this.peerNonce = toHex(theirs);
  }

  failWith(error) {
    this.state = 'failed';
    this.error = error;
    return null;
  }
}

if (typeof module !== 'undefined' && module.exports) {
  module.exports = {
    parseRoomCode, sanitizeFileName, sha256Fallback, signalingUrl, roomFromUrl, preferH264,
    certificateFingerprint, firstSha256Fingerprint, securityCode, SasExchange,
  };
}

// ---- The page --------------------------------------------------------------------------------

if (typeof document !== 'undefined') {
  (() => {
    const $ = (id) => document.getElementById(id);
    const ui = {
      state: $('state'),
      roomLabel: $('room-label'),
      message: $('message'),
      lobby: $('lobby'),
      room: $('room'),
      name: $('name'),
      join: $('join'),
      call: $('call'),
      remoteVideo: $('remote-video'),
      localVideo: $('local-video'),
      placeholder: $('remote-placeholder'),
      toggleMic: $('toggle-mic'),
      toggleCamera: $('toggle-camera'),
      unmuteRemote: $('unmute-remote'),
      hangup: $('hangup'),
      invite: $('invite'),
      securityCode: $('security-code'),
      inviteLink: $('invite-link'),
      callStats: $('call-stats'),
      chatLog: $('chat-log'),
      chatForm: $('chat-form'),
      chatInput: $('chat-input'),
      chatSend: $('chat-send'),
      fileInput: $('file-input'),
      fileList: $('file-list'),
    };
    const params = new URLSearchParams(location.search);

    /** What tests (and curious people in the console) can read. Updated in place. */
    const confab = {
      state: 'idle', // idle | joining | waiting | connecting | connected | ended | error
      error: null,
      room: null,
      me: null,
      peer: null, // { id, name } of the other person
      media: null, // what we send: 'camera+mic', 'camera', 'mic' or 'receive-only'
      securityCode: null, // '1234 5678 9012' once the exchange on the data channel is done
      securityError: null, // why there is no code, when the exchange failed
      server: null,
      chatReceived: [],
      chatSent: [],
      filesReceived: [], // { name, size, sha256, ok, error }
      filesSent: [], // { name, size, sha256, ok, error }
      // Milliseconds since Join: welcome, offer/answer, ICE connected, first remote video frame.
      timing: {},
      iceRestarts: 0, // ICE restarts this page started in the current call
      resumes: 0, // times the page took its seat back after the signaling socket dropped
      offersResent: 0, // offers sent again because no answer came
      stats,
      sendChat,
      sendFile,
      join,
      hangup,
      // Data channels the page opened that the other side has no use for, and how many of them
      // it closed (tests: a peer that opens channel after channel must not hold them open).
      foreignChannels: { opened: 0, closed: 0 },
      openForeignChannels,
      // What the other side's decoder last asked of our video ({ maxPixelRate, scale, maxBitrate }),
      // once it asked: the picture is scaled down by `scale` to fit, its bitrate held to
      // `maxBitrate` (null while not scaled).
      videoLimit: null,
      // Whether the page last asked the other side for the least video, as it is hidden.
      askedLeastVideo: false,
      // How many times the page told its user they were speaking while muted.
      mutedNotices: 0,
    };
    window.confab = confab;

    let call = null; // the current Call, if any
    let lastStats = null; // the final stats of the previous call, once it ended
    let localStream = null; // camera and microphone while in a call
    let mediaNote = ''; // what the other person will miss (no camera, no microphone)

    function log(...args) {
      console.log('[confab]', ...args);
    }

    function setState(state) {
      confab.state = state;
      ui.state.textContent = state;
      ui.state.dataset.state = state;
      const inCall = ['joining', 'waiting', 'connecting', 'connected'].includes(state);
      ui.lobby.hidden = inCall;
      ui.join.disabled = inCall;
      ui.call.hidden = state === 'idle' || (state === 'error' && !call);
      ui.hangup.disabled = !inCall;
      ui.placeholder.textContent = {
        joining: 'Joining…',
        waiting: 'Waiting for the other person…',
        connecting: 'Connecting…',
        ended: 'The call ended.',
        error: 'No call.',
      }[state] || '';
      ui.placeholder.hidden = state === 'connected' && ui.remoteVideo.videoWidth > 0;
    }

    /** Shows a status line; while in a call, the note about missing devices stays on it. */
    function showMessage(text, isError = false) {
      const inCall = call && !call.closed;
      const full = inCall && mediaNote && !isError ? `${text} ${mediaNote}`.trim() : text;
      ui.message.textContent = full;
      ui.message.hidden = !full;
      ui.message.classList.toggle('error', isError);
    }

    function fail(text) {
      log('error:', text);
      confab.error = text;
      showMessage(text, true);
      if (call) call.close();
      setState('error');
    }

    // ---- Camera and microphone -------------------------------------------------------------------

    /** Camera and mic if we may; one of them, or nothing (receive-only), with a clear message. */
    async function openMedia() {
      if (localStream) return localStream;
      mediaNote = '';
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        mediaNote = 'This browser gives no camera or microphone to this page (it needs https or localhost): '
          + 'you can see and hear the other person, but they cannot see or hear you.';
        showMessage('');
        confab.media = 'receive-only';
        return null;
      }
      const attempts = [
        ['camera+mic', { video: true, audio: true }],
        ['camera', { video: true }],
        ['mic', { audio: true }],
      ];
      let lastError = null;
      for (const [what, constraints] of attempts) {
        try {
          localStream = await navigator.mediaDevices.getUserMedia(constraints);
          confab.media = what;
          if (what !== 'camera+mic') {
            const [have, miss] = what === 'camera' ? ['camera', 'not hear'] : ['microphone', 'not see'];
            mediaNote = `Only your ${have} is on (${lastError.name}): the other person will ${miss} you.`;
            showMessage('');
          }
          ui.localVideo.srcObject = localStream;
          ui.localVideo.hidden = localStream.getVideoTracks().length === 0;
          return localStream;
        } catch (err) {
          lastError = err;
          log('getUserMedia', JSON.stringify(constraints), 'failed:', err.name, err.message);
        }
      }
      confab.media = 'receive-only';
      ui.localVideo.hidden = true;
      mediaNote = `No camera or microphone (${lastError.name}: ${lastError.message}): `
        + 'you can see and hear the other person, but they cannot see or hear you.';
      showMessage('');
      return null;
    }

    /** Turns the camera and microphone off (the next Join opens them again). */
    function closeMedia() {
      if (!localStream) return;
      for (const track of localStream.getTracks()) track.stop();
      watchMutedSpeech();
      localStream = null;
      ui.localVideo.srcObject = null;
      updateToggles();
    }

    function updateToggles() {
      const audio = localStream ? localStream.getAudioTracks()[0] : null;
      const video = localStream ? localStream.getVideoTracks()[0] : null;
      ui.toggleMic.disabled = !audio;
      ui.toggleCamera.disabled = !video;
      ui.toggleMic.setAttribute('aria-pressed', String(!!audio && !audio.enabled));
      ui.toggleMic.textContent = audio && !audio.enabled ? 'Unmute' : 'Mute';
      ui.toggleCamera.setAttribute('aria-pressed', String(!!video && !video.enabled));
      ui.toggleCamera.textContent = video && !video.enabled ? 'Start video' : 'Stop video';
    }

    ui.toggleMic.addEventListener('click', () => {
      for (const track of localStream ? localStream.getAudioTracks() : []) track.enabled = !track.enabled;
      updateToggles();
      watchMutedSpeech();
    });

    // Speaking into a muted microphone: as the app does (call.rs, MutedSpeech), a second of
    // speech above the speaking level brings a notice, at most one in 20 s. A clone of the muted
    // track is measured, never sent.
    const SPEAKING_DBFS = -45; // audio::SPEAKING_DBFS
    const LEVEL_DECAY_DB_PER_S = 40; // audio::LEVEL_DECAY_DB_PER_S
    const MUTED_SPEECH_MS = 1000;
    const MUTED_NOTICE_EVERY_MS = 20000;
    const MUTED_NOTICE = 'You are muted. Press Unmute to speak.';
    let mutedProbe = null; // { track, context, timer } while muted

    function watchMutedSpeech() {
      const audio = localStream ? localStream.getAudioTracks()[0] : null;
      const muted = !!audio && !audio.enabled && audio.readyState === 'live';
      if (!muted) {
        if (mutedProbe) {
          clearInterval(mutedProbe.timer);
          mutedProbe.track.stop();
          mutedProbe.context.close().catch(() => {});
          mutedProbe = null;
        }
        return;
      }
      if (mutedProbe) return;
      const track = audio.clone();
      track.enabled = true;
      let context;
      let analyser;
      try {
        context = new AudioContext();
        analyser = context.createAnalyser();
        analyser.fftSize = 2048;
        context.createMediaStreamSource(new MediaStream([track])).connect(analyser);
      } catch (err) {
        // Muting works without it; only the notice is lost.
        log('cannot listen to the muted microphone:', err.message);
        track.stop();
        if (context) context.close().catch(() => {});
        return;
      }
      const samples = new Float32Array(analyser.fftSize);
      const tickMs = 100;
      let level = -100;
      let since = null;
      let lastNotice = -Infinity;
      const timer = setInterval(() => {
        analyser.getFloatTimeDomainData(samples);
        let sum = 0;
        for (const x of samples) sum += x * x;
        const rms = 10 * Math.log10(sum / samples.length + 1e-12);
        level = Math.max(rms, level - (LEVEL_DECAY_DB_PER_S * tickMs) / 1000, -100);
        const now = Date.now();
        if (level <= SPEAKING_DBFS) {
          since = null;
          return;
        }
        if (since === null) since = now;
        if (now - since >= MUTED_SPEECH_MS && now - lastNotice >= MUTED_NOTICE_EVERY_MS) {
          lastNotice = now;
          confab.mutedNotices += 1;
          showMessage(MUTED_NOTICE);
        }
      }, tickMs);
      mutedProbe = { track, context, timer };
    }
    ui.toggleCamera.addEventListener('click', () => {
      for (const track of localStream ? localStream.getVideoTracks() : []) track.enabled = !track.enabled;
      updateToggles();
    });
    ui.unmuteRemote.addEventListener('click', () => {
      ui.remoteVideo.muted = false;
      ui.remoteVideo.play().catch(() => {});
      ui.unmuteRemote.hidden = true;
    });

    // ---- One call --------------------------------------------------------------------------------

    /** One visit to a room: the socket, the PeerConnection, its data channels and transfers. */
    class Call {
      constructor(serverUrl, room, name) {
        this.serverUrl = serverUrl;
        this.room = room; // null: ask the server for a new room
        this.name = name;
        this.t0 = performance.now();
        this.ws = null;
        this.opened = false; // the socket connected
        this.welcomed = false;
        this.inbox = Promise.resolve(); // server messages are handled one after another
        this.pc = null;
        this.me = null;
        this.remote = null; // { id, name }
        this.makingOffer = false;
        this.channelsCreated = false;
        this.pendingCandidates = []; // remote candidates before the remote description
        this.channels = {}; // label -> open RTCDataChannel
        this.queuedChat = [];
        this.queuedFiles = [];
        this.nextFileId = 1;
        this.outgoing = new Map(); // id -> { file, name, size, sha256, row }
        this.incoming = new Map(); // id -> { name, size, sha256, chunks, received, row }
        this.offered = new Map(); // id -> { name, size, sha256, row }: waiting for the person
        this.remoteStream = new MediaStream();
        this.sas = new SasExchange(crypto.getRandomValues(new Uint8Array(32)));
        confab.securityCode = null;
        confab.securityError = null;
        this.closed = false;
        this.ending = false;
        this.statsTimer = null;
        this.joinTimer = null;
        this.resumeToken = null; // from `welcome`: gets our seat back after a dropped socket
        this.askedLeast = false; // we asked for the least video, as the page is hidden
        this.resumeAttempts = 0;
        this.everConnected = false;
        this.downSince = null; // the connection dropped (after it first connected)
        this.failed = false;
        this.lastRestart = null;
        this.restartTimer = null;
        this.offerTimer = null; // sends our offer again while it has no answer
        this.heartbeatTimer = null;
        this.lastHeard = performance.now(); // the last message from the server
        this.networkChanged = false; // the call and the server went quiet together, or the browser came back online
        this.outbox = []; // signals written while the socket was being resumed
      }

      mark(what) {
        if (confab.timing[what] === undefined) confab.timing[what] = Math.round(performance.now() - this.t0);
      }

      // -- signaling --

      start() {
        log('connecting to', this.serverUrl);
        try {
          this.ws = new WebSocket(this.serverUrl);
        } catch (err) {
          fail(`Bad server address ${this.serverUrl}: ${err.message}`);
          return;
        }
        this.joinTimer = setTimeout(() => {
          if (this.welcomed || this.closed) return;
          fail(`The signaling server at ${this.serverUrl} did not answer within ${JOIN_TIMEOUT_MS / 1000} s.`);
        }, JOIN_TIMEOUT_MS);
        this.ws.onopen = () => {
          this.opened = true;
          const join = { type: 'join', version: PROTOCOL_VERSION, name: this.name };
          if (this.room) join.room = this.room;
          this.send(join);
        };
        this.watchSocket();
      }

      /** Messages and the end of the current socket. */
      watchSocket() {
        this.ws.onmessage = (event) => {
          if (this.closed) return;
          this.lastHeard = performance.now();
          let msg;
          try {
            msg = JSON.parse(event.data);
          } catch (err) {
            log('ignoring an unreadable server message:', String(event.data).slice(0, 200));
            return;
          }
          // One message at a time, in order: negotiation steps must not interleave.
          this.inbox = this.inbox
            .then(() => (this.closed ? undefined : this.onServerMessage(msg)))
            .catch((err) => fail(`Negotiation failed: ${err.message || err}`));
        };
        this.ws.onclose = (event) => this.onSocketClosed(event);
      }

      send(msg) {
        if (this.ws && this.ws.readyState === WebSocket.OPEN) {
          this.ws.send(JSON.stringify(msg));
        } else if (this.welcomed && msg.type === 'signal' && this.outbox.length < 500) {
          // Resuming: the other side gets it once we have our seat back.
          this.outbox.push(msg);
        } else {
          log('not sent (the signaling socket is not open):', msg.type, msg.payload ? msg.payload.kind : '');
        }
      }

      signal(payload) {
        if (this.remote) this.send({ type: 'signal', to: this.remote.id, payload });
      }

      /** Pings the server now and then; a socket silent for too long is given up and resumed. A
       *  socket whose network went away can look open for minutes, swallowing what we send. */
      startHeartbeat() {
        if (this.heartbeatTimer) return;
        this.heartbeatTimer = setInterval(() => {
          if (this.closed || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
          if (performance.now() - this.lastHeard > SILENCE_LIMIT_MS) {
            this.dropSocket('no answer from the server');
            return;
          }
          this.send({ type: 'ping' });
        }, HEARTBEAT_MS);
      }

      /** Checks at once that the signaling socket still works (the call's connection dropped:
       *  the network may have changed under both); a new socket is made if it does not answer. */
      probeSignaling() {
        if (this.closed || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
        const asked = performance.now();
        this.send({ type: 'ping' });
        setTimeout(() => {
          if (this.closed || this.lastHeard >= asked) return;
          // Both the call and the server went quiet at once: our network changed. The candidates
          // we gave are stale, so restart ICE as soon as we are back on the server, whichever
          // side we are (as the app does when its addresses change).
          this.networkChanged = true;
          this.dropSocket('no answer from the server');
        }, PROBE_MS);
      }

      /** Abandons the current socket (it stays quiet: its handlers are removed) and resumes. */
      dropSocket(reason) {
        const ws = this.ws;
        if (!ws) return;
        ws.onmessage = null;
        ws.onclose = null;
        try {
          ws.close(4000, reason);
        } catch (err) {
          // Closing a socket that is already going away: nothing to do.
        }
        log('signaling socket given up:', reason);
        this.onSocketClosed({ code: 4000, reason });
      }

      onSocketClosed(event) {
        if (this.closed) return;
        const reason = event.reason ? `: ${event.reason}` : '';
        log('signaling closed', event.code, event.reason);
        if (this.welcomed && this.resumeToken && this.resumeAttempts < RESUME_ATTEMPTS) {
          // The server keeps our seat for a while: reconnect with backoff and take it back.
          const wait = RESUME_BACKOFF_MS[Math.min(this.resumeAttempts, RESUME_BACKOFF_MS.length - 1)];
          this.resumeAttempts += 1;
          if (this.resumeAttempts === 1) showMessage(`Lost the signaling server${reason}; reconnecting (the call goes on).`);
          setTimeout(() => this.resume(), wait);
          return;
        }
        if (!this.opened) {
          fail(`Cannot reach the signaling server at ${this.serverUrl}.`);
        } else if (!this.welcomed) {
          fail(`The signaling server closed the connection before letting this page in (code ${event.code}${reason}).`);
        } else if (confab.state === 'connected') {
          // The call is peer to peer: it goes on without the server (as in the native app).
          showMessage(`Lost the signaling server${reason}; the call continues.`);
        } else {
          fail(`Lost the signaling server before the call connected (code ${event.code}${reason}).`);
        }
      }

      /** A new socket that asks for our seat back with the resume token. */
      resume() {
        if (this.closed) return;
        log('resuming on', this.serverUrl);
        this.lastHeard = performance.now(); // a new socket gets its own chance to answer
        try {
          this.ws = new WebSocket(this.serverUrl);
        } catch (err) {
          fail(`Bad server address ${this.serverUrl}: ${err.message}`);
          return;
        }
        this.ws.onopen = () => {
          this.send({ type: 'resume', version: PROTOCOL_VERSION, token: this.resumeToken });
        };
        this.watchSocket();
      }

      async onServerMessage(msg) {
        switch (msg.type) {
          case 'welcome':
            if (this.welcomed) {
              // Resumed: same seat, same id; the PeerConnection never stopped.
              this.resumeAttempts = 0;
              confab.resumes += 1;
              if (typeof msg.resume_token === 'string') this.resumeToken = msg.resume_token;
              log('back on the signaling server');
              showMessage('Back on the signaling server.');
              for (const waiting of this.outbox.splice(0)) this.send(waiting);
              // An offer sent before the drop may have gone into the dead socket.
              if (this.pc && this.pc.signalingState === 'have-local-offer') this.watchOffer(0);
              if (this.networkChanged && this.downSince !== null) {
                this.scheduleRestart();
              } else if (this.networkChanged) {
                // The call has not noticed yet (it may never: the old path may still work).
                this.networkChanged = false;
                this.restartNow();
              }
              return undefined;
            }
            return this.onWelcome(msg);
          case 'peer_away':
            if (this.remote && msg.id === this.remote.id) {
              showMessage(`${this.remote.name || 'The other person'}'s signaling connection dropped; the call goes on.`);
            }
            return undefined;
          case 'peer_back':
            // What we sent while their socket was dead may be lost: an unanswered offer goes again.
            if (this.remote && msg.id === this.remote.id && this.pc && this.pc.signalingState === 'have-local-offer') {
              this.watchOffer(0);
            }
            return undefined;
          case 'peer_joined':
            if (!this.remote && msg.peer) {
              this.setRemote(msg.peer);
              setState('connecting');
              showMessage(`${this.remote.name || 'Someone'} joined; connecting…`);
            }
            return undefined;
          case 'peer_left':
            if (this.remote && msg.id === this.remote.id) {
              await this.end(`${this.remote.name || 'The other person'} left the call.`);
            }
            return undefined;
          case 'signal':
            return this.onSignal(msg.from, msg.payload || {});
          case 'ice_servers':
            return this.onIceServers(msg.ice_servers);
          case 'pong':
            return undefined;
          case 'error':
            return this.onServerError(msg);
          default:
            log('ignoring server message of type', msg.type);
            return undefined;
        }
      }

      onServerError(msg) {
        // The server's sentence says it best ("room kfq-wmzt-pxd is full (2 of 2 people are in it)").
        const message = typeof msg.message === 'string' ? msg.message.trim() : '';
        let text = message
          ? `${message[0].toUpperCase()}${message.slice(1)}${/[.!?]$/.test(message) ? '' : '.'}`
          : SERVER_ERRORS[msg.code] || `The server reported a problem (${msg.code}).`;
        if (msg.code === 'version_mismatch' && message) text += ' Reload the page.';
        if (!this.welcomed || FATAL_ERRORS.has(msg.code)) {
          fail(text);
        } else {
          log('server error', msg.code, message);
          showMessage(text, true);
        }
      }

      async onWelcome(msg) {
        clearTimeout(this.joinTimer);
        if (msg.version !== PROTOCOL_VERSION) {
          fail(SERVER_ERRORS.version_mismatch);
          return;
        }
        this.welcomed = true;
        if (typeof msg.resume_token === 'string') this.resumeToken = msg.resume_token;
        this.startHeartbeat();
        this.mark('welcome');
        this.me = msg.you;
        confab.me = msg.you;
        confab.room = msg.room;
        ui.room.value = msg.room;
        ui.roomLabel.textContent = msg.room;
        ui.roomLabel.hidden = false;
        showInvite(msg.room);
        log('joined room', msg.room, 'as', msg.you, 'with', (msg.peers || []).length, 'peer(s)');
        this.buildPeerConnection(Array.isArray(msg.ice_servers) ? msg.ice_servers : []);
        const first = (msg.peers || [])[0];
        if (first) {
          this.setRemote(first);
          setState('connecting');
          await this.makeOffer();
        } else {
          setState('waiting');
          showMessage('Waiting for the other person to join. Share the invite link.');
        }
      }

      /**
       * Fresh ICE servers from the server: TURN credentials arrive only once someone else is in
       * the room (the welcome of whoever was alone carried STUN only), and live minutes, so they
       * take effect for the gathering still to come (the answer, or an ICE restart).
       */
      onIceServers(iceServers) {
        if (!this.pc || !Array.isArray(iceServers)) return;
        try {
          this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceServers });
          log('ICE servers updated:', iceServers.length);
        } catch (err) {
          log('could not update ICE servers', err);
        }
      }

      setRemote(peer) {
        this.remote = { id: peer.id, name: String(peer.name || '') };
        confab.peer = this.remote;
      }

      async onSignal(from, payload) {
        if (!this.remote) this.setRemote({ id: from, name: '' });
        if (from !== this.remote.id || !this.pc) return; // rooms of more than two: not ours
        switch (payload.kind) {
          case 'offer':
            return this.onOffer(payload.sdp);
          case 'answer':
            return this.onAnswer(payload.sdp);
          case 'candidate':
            return this.onRemoteCandidate({
              candidate: payload.candidate,
              sdpMid: payload.sdpMid === undefined ? null : payload.sdpMid,
              sdpMLineIndex: payload.sdpMLineIndex === undefined ? null : payload.sdpMLineIndex,
            });
          case 'end_of_candidates':
            return undefined;
          case 'bye':
            return this.end(`${this.remote.name || 'The other person'} hung up.`);
          case 'description_error': {
            const text = Array.from(String(payload.message)).filter((c) => c >= ' ').slice(0, 200).join('');
            log('the other side could not use our description:', text);
            return showMessage(`The other side says: ${text}`, true);
          }
          default:
            log('ignoring signal of kind', payload.kind);
            return undefined;
        }
      }

      // -- the PeerConnection --

      buildPeerConnection(iceServers) {
        const pc = new RTCPeerConnection({ iceServers });
        this.pc = pc;
        // addTrack (not addTransceiver), so an incoming offer reuses these senders (JSEP).
        if (localStream) for (const track of localStream.getTracks()) pc.addTrack(track, localStream);
        pc.onicecandidate = ({ candidate }) => {
          if (!candidate) {
            this.signal({ kind: 'end_of_candidates' });
          } else if (candidate.candidate) {
            this.signal({
              kind: 'candidate',
              candidate: candidate.candidate,
              sdpMid: candidate.sdpMid,
              sdpMLineIndex: candidate.sdpMLineIndex,
            });
          }
        };
        pc.ontrack = ({ track }) => {
          log('remote', track.kind, 'track');
          this.remoteStream.addTrack(track);
          ui.remoteVideo.srcObject = this.remoteStream;
          playRemote();
          if (track.kind === 'video') watchFirstFrame(this);
        };
        pc.ondatachannel = ({ channel }) => {
          if (channel.label !== CONTROL_LABEL && channel.label !== FILE_LABEL) {
            // Not ours (a newer version's, or a peer opening channel after channel): closed at
            // once, as the native client does, so it holds nothing here.
            log('closing a data channel we do not use:', channel.label);
            channel.close();
            return;
          }
          // The other side made the channels: an offer of ours (an ICE restart) must not add more.
          this.channelsCreated = true;
          this.watchChannel(channel);
        };
        pc.onconnectionstatechange = () => this.onConnectionState(pc.connectionState);
      }

      onConnectionState(state) {
        log('connection state', state);
        if (this.closed) return;
        if (this.everConnected && (state === 'disconnected' || state === 'failed')) {
          // Try to get it back: wait a little (a short outage heals by itself), then restart ICE.
          if (this.downSince === null) {
            this.downSince = performance.now();
            this.probeSignaling();
          }
          if (state === 'failed') this.failed = true;
          setState('connecting');
          showMessage('The connection dropped; trying to get it back…');
          this.scheduleRestart();
          return;
        }
        if (state === 'connected') {
          this.everConnected = true;
          this.downSince = null;
          this.networkChanged = false;
          this.lastRestart = null;
          this.failed = false;
          clearTimeout(this.restartTimer);
          this.mark('connected');
          setState('connected');
          showMessage(`In a call with ${this.remote && this.remote.name ? this.remote.name : 'the other person'}.`);
          if (!this.statsTimer) this.statsTimer = setInterval(() => showStats(), 1000);
        } else if (state === 'disconnected' && confab.state === 'connected') {
          setState('connecting');
          showMessage('The connection dropped; trying to get it back…');
        } else if (state === 'failed') {
          fail('The connection failed: no network path between you and the other person (a TURN server may be needed).');
        }
      }

      /**
       * When to restart ICE while the connection is down, as the native client does: the older
       * peer (lower id) first, after RESTART_AFTER_MS (at once on failure), the newer one only if
       * that did not help; again every RESTART_RETRY_MS; the call ends after GIVE_UP_MS.
       */
      scheduleRestart() {
        clearTimeout(this.restartTimer);
        if (this.closed || this.downSince === null || !this.remote) return;
        const now = performance.now();
        if (now - this.downSince >= GIVE_UP_MS) {
          fail('The connection was lost and could not be restored.');
          return;
        }
        const polite = this.me > this.remote.id;
        let due;
        if (this.lastRestart !== null) due = this.lastRestart + RESTART_RETRY_MS;
        else if (this.networkChanged) due = now;
        else if (polite) due = this.downSince + RESTART_AFTER_MS + RESTART_RETRY_MS;
        else if (this.failed) due = this.downSince;
        else due = this.downSince + RESTART_AFTER_MS;
        const wait = Math.min(due, this.downSince + GIVE_UP_MS) - now;
        this.restartTimer = setTimeout(() => {
          if (this.closed || this.downSince === null) return;
          if (performance.now() >= due) {
            this.lastRestart = performance.now();
            this.restartNow();
          }
          this.scheduleRestart();
        }, Math.max(0, wait) + 10);
      }

      /** Restarts ICE: an offer with new credentials, or, while our last offer is unanswered,
       *  that offer again (a new restart would only wait behind it, and an older peer ignores
       *  our offers while its own is out). */
      restartNow() {
        if (this.pc.signalingState === 'have-local-offer') {
          this.watchOffer(0);
          return;
        }
        log('restarting ICE');
        confab.iceRestarts += 1;
        this.send({ type: 'ice_servers' }); // fresh TURN credentials for the new candidates
        this.pc.restartIce();
        this.inbox = this.inbox
          .then(() => (this.closed || this.pc.signalingState !== 'stable' ? undefined : this.makeOffer()))
          .catch((err) => log('ICE restart failed', err));
      }

      /** Told, with each second's stats, the bytes the connection's path has brought in so far
       *  (null without a selected pair): nothing new for STALL_MS while the connection says
       *  "connected" means the path died without the browser saying so. The signaling socket is
       *  checked at once, and if it is dead too, our network changed and ICE restarts as soon as
       *  we are back on the server (`probeSignaling`). Once per silence. */
      noteFlow(received) {
        if (this.closed || received === null || this.pc.connectionState !== 'connected') return;
        const now = performance.now();
        if (this.flow === undefined || received !== this.flow.bytes) {
          this.flow = { bytes: received, since: now, probed: false };
        } else if (!this.flow.probed && now - this.flow.since >= STALL_MS) {
          this.flow.probed = true;
          log(`nothing has arrived for ${Math.round(now - this.flow.since)} ms; checking the signaling server`);
          this.probeSignaling();
        }
      }

      /** The browser is online again after being offline: the machine's network changed, and
       *  our address with it, most likely. As the app does when its addresses change: a new
       *  signaling socket (the old one may be bound to an address that is gone), then an ICE
       *  restart at once, whichever side we are, without waiting for ICE to notice the drop. */
      onNetworkChanged() {
        if (this.closed || !this.everConnected) return;
        log('the network changed; restarting ICE once back on the signaling server');
        this.networkChanged = true;
        // A socket that is not open is being resumed already (its welcome does the restart);
        // dropping it too would start a second resume beside the one under way.
        if (this.ws && this.ws.readyState === WebSocket.OPEN) this.dropSocket('the network changed');
      }

      /** Puts our tracks on senders that carry none yet (after an offer created the transceivers). */
      attachLocalTracks() {
        if (!localStream) return;
        const sending = new Set(this.pc.getSenders().map((s) => s.track).filter(Boolean));
        for (const track of localStream.getTracks()) {
          if (sending.has(track)) continue;
          const free = this.pc.getTransceivers()
            .find((t) => !t.stopped && t.receiver.track.kind === track.kind && !t.sender.track);
          if (!free) continue;
          free.sender.replaceTrack(track);
          free.sender.setStreams(localStream);
          free.direction = 'sendrecv';
        }
      }

      /** Puts H.264 (42e01f, packetization-mode 1) first on the video transceivers. */
      preferH264() {
        if (typeof RTCRtpReceiver === 'undefined' || !RTCRtpReceiver.getCapabilities) return;
        const caps = RTCRtpReceiver.getCapabilities('video');
        if (!caps) return;
        const codecs = preferH264(caps.codecs);
        for (const t of this.pc.getTransceivers()) {
          if (t.stopped || t.receiver.track.kind !== 'video' || !t.setCodecPreferences) continue;
          try {
            t.setCodecPreferences(codecs);
          } catch (err) {
            log('setCodecPreferences failed:', err.message);
          }
        }
      }

      async makeOffer() {
        if (!this.channelsCreated) {
          this.channelsCreated = true;
          this.watchChannel(this.pc.createDataChannel(CONTROL_LABEL, { ordered: true }));
          this.watchChannel(this.pc.createDataChannel(FILE_LABEL, { ordered: true }));
        }
        // Receive a kind even when we have nothing to send of it.
        for (const kind of ['video', 'audio']) {
          if (!this.pc.getTransceivers().some((t) => t.receiver.track.kind === kind)) {
            this.pc.addTransceiver(kind, { direction: 'recvonly' });
          }
        }
        this.preferH264();
        this.makingOffer = true;
        try {
          await this.pc.setLocalDescription(await this.pc.createOffer());
        } finally {
          this.makingOffer = false;
        }
        this.mark('offer');
        log('sending offer');
        this.signal({ kind: 'offer', sdp: this.pc.localDescription.sdp });
        this.watchOffer();
      }

      /** Sends our offer again after `wait` ms if it is still unanswered: the same offer, as the
       *  local description now is (with the candidates gathered since), so an answer to either
       *  copy answers it and no late answer can be taken for one to a newer offer. */
      watchOffer(wait = OFFER_RESEND_MS) {
        clearTimeout(this.offerTimer);
        this.offerTimer = setTimeout(() => {
          this.inbox = this.inbox
            .then(() => {
              if (this.closed || this.makingOffer || this.pc.signalingState !== 'have-local-offer') return;
              log('no answer to our offer yet; sending it again');
              confab.offersResent += 1;
              this.signal({ kind: 'offer', sdp: this.pc.localDescription.sdp });
              this.watchOffer();
            })
            .catch((err) => log('could not send our offer again', err));
        }, wait);
      }

      async onOffer(sdp) {
        const glare = this.makingOffer || this.pc.signalingState !== 'stable';
        // Perfect negotiation: the newer peer (higher id) is polite and yields.
        const polite = this.me > this.remote.id;
        if (glare && !polite) {
          log('offer collision: keeping ours');
          return;
        }
        if (glare) {
          log('offer collision: rolling back ours');
          await this.pc.setLocalDescription({ type: 'rollback' });
        }
        try {
          await this.pc.setRemoteDescription({ type: 'offer', sdp });
        } catch (err) {
          this.signal({ kind: 'description_error', message: `your offer cannot be used (${err.message})` });
          showMessage(`The other side sent an offer that cannot be used (${err.message}).`, true);
          return;
        }
        await this.flushCandidates();
        this.attachLocalTracks();
        this.preferH264();
        await this.pc.setLocalDescription(await this.pc.createAnswer());
        this.mark('answer');
        log('sending answer');
        this.signal({ kind: 'answer', sdp: this.pc.localDescription.sdp });
      }

      async onAnswer(sdp) {
        if (this.pc.signalingState !== 'have-local-offer') {
          log('ignoring an answer we did not ask for');
          return;
        }
        try {
          await this.pc.setRemoteDescription({ type: 'answer', sdp });
        } catch (err) {
          this.signal({ kind: 'description_error', message: `your answer cannot be used (${err.message})` });
          showMessage(`The other side sent an answer that cannot be used (${err.message}).`, true);
          return;
        }
        this.mark('answer');
        await this.flushCandidates();
      }

      async onRemoteCandidate(init) {
        if (!this.pc.remoteDescription) {
          this.pendingCandidates.push(init);
          return;
        }
        await this.addCandidate(init);
      }

      async flushCandidates() {
        const pending = this.pendingCandidates;
        this.pendingCandidates = [];
        for (const init of pending) await this.addCandidate(init);
      }

      async addCandidate(init) {
        try {
          await this.pc.addIceCandidate(init);
        } catch (err) {
          // A candidate naming an unknown m-line: with BUNDLE every m-line shares one transport,
          // so the first one does as well.
          try {
            await this.pc.addIceCandidate({ candidate: init.candidate, sdpMLineIndex: 0 });
          } catch (err2) {
            log('ignoring a remote candidate:', err2.message, JSON.stringify(init));
          }
        }
      }

      // -- data channels --

      watchChannel(dc) {
        dc.binaryType = 'arraybuffer';
        const label = dc.label;
        const opened = () => {
          if (this.channels[label] === dc) return; // both already open and the open event
          log('data channel open:', label);
          this.channels[label] = dc;
          this.onChannelsChanged();
        };
        if (dc.readyState === 'open') opened();
        dc.onopen = opened;
        dc.onclose = () => {
          log('data channel closed:', label);
          if (this.channels[label] === dc) delete this.channels[label];
          this.onChannelsChanged();
        };
        dc.onmessage = ({ data }) => {
          if (label === CONTROL_LABEL && typeof data === 'string') {
            if (data.length > MAX_CONTROL_BYTES) {
              log('ignoring an oversized control message');
              return;
            }
            this.onControl(data).catch((err) => log('control message failed:', err.message));
          } else if (label === FILE_LABEL && data instanceof ArrayBuffer) {
            this.onChunk(data).catch((err) => log('file chunk failed:', err.message));
          } else {
            log('ignoring a message of the wrong kind on', label);
          }
        };
      }

      onChannelsChanged() {
        const control = this.channels[CONTROL_LABEL];
        const file = this.channels[FILE_LABEL];
        ui.chatInput.disabled = !control;
        ui.chatSend.disabled = !control;
        ui.fileInput.disabled = !(control && file);
        if (control) {
          this.askForVideo();
          this.startSas().catch((err) => log('security code exchange failed:', err.message));
          while (this.queuedChat.length) this.chat(this.queuedChat.shift());
          if (file) while (this.queuedFiles.length) this.offerFile(this.queuedFiles.shift());
        }
      }

      // While the page is hidden (another tab in front, the browser minimized) nobody sees the
      // other side's video: ask it for the least (`video_limit`), as the app does while its window
      // is minimized, and take the ask back when the page shows again. Both computers save most
      // of the video's work meanwhile.
      askForVideo() {
        const hidden = document.visibilityState === 'hidden';
        if (hidden === this.askedLeast) return;
        if (this.sendControl({ type: 'video_limit', max_pixel_rate: hidden ? LEAST_VIDEO : null })) {
          this.askedLeast = hidden;
          confab.askedLeastVideo = hidden;
          log(hidden ? 'the page is hidden: asking for the least video' : 'the page shows again: asking for all the video');
        }
      }

      sendControl(msg) {
        const dc = this.channels[CONTROL_LABEL];
        if (!dc) return false;
        try {
          dc.send(JSON.stringify(msg));
          return true;
        } catch (err) {
          log('could not send on the data channel:', err.message);
          return false;
        }
      }

      // -- the security code (see SECURITY.md) --

      async startSas() {
        const hash = await this.sas.commit();
        if (hash === null) return;
        this.sendControl({ type: 'sas_commit', hash });
        const nonce = this.sas.reveal();
        if (nonce !== null) this.sendControl({ type: 'sas_reveal', nonce });
      }

      async onSasReveal(nonceHex) {
        await this.sas.onReveal(nonceHex);
        if (this.sas.state === 'failed') {
          confab.securityError = this.sas.error;
          showSecurityCode(null, `No security code: ${this.sas.error}; someone may be in the middle of this call.`);
          return;
        }
        if (this.sas.state !== 'done') return;
        const local = firstSha256Fingerprint(this.pc.localDescription && this.pc.localDescription.sdp);
        const remote = await this.verifiedRemoteFingerprint();
        if (!local || !remote) {
          confab.securityError = 'the connection\'s certificates are unknown';
          showSecurityCode(null, 'No security code: the connection\'s certificates are unknown.');
          return;
        }
        const code = await securityCode(local, toHex(this.sas.nonce), remote, this.sas.peerNonce);
        confab.securityCode = code;
        showSecurityCode(code);
      }

      /**
       * The certificate the other side proved it holds in the DTLS handshake; where the browser
       * does not expose it, the first fingerprint of the remote description (what DTLS checks).
       */
      async verifiedRemoteFingerprint() {
        const dtls = this.pc.sctp && this.pc.sctp.transport;
        if (dtls && typeof dtls.getRemoteCertificates === 'function') {
          const certs = dtls.getRemoteCertificates();
          if (certs && certs.length) return certificateFingerprint(certs[0]);
        }
        return firstSha256Fingerprint(this.pc.remoteDescription && this.pc.remoteDescription.sdp);
      }

      chat(text) {
        text = Array.from(String(text)).slice(0, MAX_CHAT_CHARS).join('');
        if (!this.channels[CONTROL_LABEL]) {
          this.queuedChat.push(text);
          return;
        }
        if (this.sendControl({ type: 'chat', text })) {
          confab.chatSent.push(text);
          addChatLine('You', text, true);
        }
      }

      async onControl(text) {
        let msg;
        try {
          msg = JSON.parse(text);
        } catch (err) {
          log('ignoring an unreadable data-channel message');
          return;
        }
        if (!msg || typeof msg !== 'object') return;
        const id = msg.id;
        switch (msg.type) {
          case 'sas_commit': {
            const nonce = this.sas.onCommit(msg.hash);
            if (nonce !== null) this.sendControl({ type: 'sas_reveal', nonce });
            if (this.sas.state === 'failed') await this.onSasReveal(null);
            break;
          }
          case 'sas_reveal':
            await this.onSasReveal(msg.nonce);
            break;
          case 'video_limit':
            await this.onVideoLimit(msg.max_pixel_rate);
            break;
          case 'chat': {
            const line = Array.from(String(msg.text)).slice(0, MAX_CHAT_CHARS).join('');
            confab.chatReceived.push(line);
            addChatLine(this.remote && this.remote.name ? this.remote.name : 'Them', line, false);
            break;
          }
          case 'file_offer':
            this.onFileOffer(msg);
            break;
          case 'file_accept':
            if (this.outgoing.has(id)) this.streamFile(id);
            break;
          case 'file_decline': {
            const out = this.outgoing.get(id);
            if (out) this.finishOutgoing(id, false, 'declined by the other person');
            break;
          }
          case 'file_result':
            if (this.outgoing.has(id)) this.finishOutgoing(id, msg.ok === true, msg.error || null);
            break;
          case 'file_cancel': {
            const file = this.incoming.get(id);
            if (file) {
              this.incoming.delete(id);
              setFileRow(file.row, `${file.name}: cancelled by the sender`, 'bad');
              const error = 'cancelled by the sender';
              confab.filesReceived.push({ name: file.name, size: file.size, sha256: file.sha256, ok: false, error });
            }
            break;
          }
          default:
            log('ignoring data-channel message of type', msg.type);
        }
      }

      // The other side's decoder keeps up with at most `max` pixels a second (null: with all we
      // have): our picture is scaled down to fit, its frame rate kept, as the native sender's
      // ladder does for it, and its bitrate held to what the smaller picture needs: Chromium
      // gave a 382x214 picture 850 kbit/s, all of it work for the decoder that asked for less.
      // (At the held bitrate Chromium's own scaler may take the picture a step further down:
      // 288x162 at 172 kbit/s of the test pattern, where 382x214 was asked for.) Each ask
      // replaces the last.
      async onVideoLimit(max) {
        if (max !== null && !(typeof max === 'number' && Number.isFinite(max) && max >= 0)) {
          // As the app does: a value that is not a pixel rate is not read as one (nor as "all").
          log('ignoring an unreadable video_limit:', String(max).slice(0, 40));
          return;
        }
        const sender = this.pc && this.pc.getSenders().find((s) => s.track && s.track.kind === 'video');
        if (!sender) return;
        const limit = max;
        const { width = 0, height = 0, frameRate = 30 } = sender.track.getSettings();
        const rate = width * height * frameRate;
        // At most 16 times smaller (80x45 of 720p), however little is asked for.
        const scale = limit !== null && rate > limit ? Math.min(MAX_SCALE_DOWN, Math.sqrt(rate / Math.max(limit, 1))) : 1;
        const params = sender.getParameters();
        if (!params.encodings || params.encodings.length === 0) return;
        params.encodings[0].scaleResolutionDownBy = scale;
        const maxBitrate = scale > 1
          ? Math.round(Math.max(CAPPED_MIN_BPS, CAPPED_BITS_PER_PIXEL * rate / (scale * scale)))
          : undefined;
        if (maxBitrate === undefined) delete params.encodings[0].maxBitrate;
        else params.encodings[0].maxBitrate = maxBitrate;
        try {
          await sender.setParameters(params);
          confab.videoLimit = { maxPixelRate: limit, scale, maxBitrate: maxBitrate === undefined ? null : maxBitrate };
          log(limit === null
            ? 'the other side keeps up with all of our video again'
            : `the other side's computer cannot keep up: our video scaled down by ${scale.toFixed(2)}`);
        } catch (err) {
          log('could not scale our video down:', err.message);
        }
      }

      // -- files: receiving (asked first, into memory, kept only if size and SHA-256 match) --

      /** Bytes of files being received or waiting for an answer. */
      heldBytes() {
        let total = 0;
        for (const f of this.incoming.values()) total += f.size;
        for (const f of this.offered.values()) total += f.size;
        return total;
      }

      onFileOffer(msg) {
        const { id, size } = msg;
        const sha256 = typeof msg.sha256 === 'string' ? msg.sha256.toLowerCase() : '';
        if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) return;
        if (this.incoming.has(id) || this.offered.has(id)) return;
        if (this.incoming.size + this.offered.size >= MAX_PENDING_FILES) {
          // Declined without a row: a flood of offers must not flood the page.
          this.sendControl({ type: 'file_decline', id });
          return;
        }
        const name = sanitizeFileName(msg.name);
        const limit = incomingMemoryLimit();
        let problem = null;
        if (!Number.isSafeInteger(size) || size < 0) problem = 'the announced size is not a byte count';
        else if (size + this.heldBytes() > limit) problem = `it does not fit in the ${limit >> 20} MiB this page may keep in memory`;
        else if (!/^[0-9a-f]{64}$/.test(sha256)) problem = 'the announced SHA-256 is not 64 hex digits';
        if (problem) {
          this.sendControl({ type: 'file_decline', id });
          addFileRow(`${name}: declined, ${problem}`, 'bad');
          return;
        }
        const offer = { name, size, sha256, row: addFileRow(`${name} (${formatBytes(size)}) offered `) };
        const scripted = typeof location !== 'undefined' &&
          new URLSearchParams(location.search).get('acceptfiles') === '1';
        if (scripted) {
          this.acceptOffer(id, offer);
          return;
        }
        this.offered.set(id, offer);
        const answer = (accept) => {
          if (!this.offered.delete(id)) return;
          for (const b of offer.row.querySelectorAll('button')) b.remove();
          if (accept) {
            this.acceptOffer(id, offer);
          } else {
            this.sendControl({ type: 'file_decline', id });
            setFileRow(offer.row, `${name}: declined`, 'bad');
          }
        };
        for (const [label, accept] of [['Accept', true], ['Decline', false]]) {
          const button = document.createElement('button');
          button.type = 'button';
          button.textContent = label;
          button.addEventListener('click', () => answer(accept));
          offer.row.append(button);
        }
      }

      acceptOffer(id, offer) {
        const { name, size, sha256, row } = offer;
        setFileRow(row, `${name}: receiving`);
        const bar = document.createElement('progress');
        bar.max = Math.max(size, 1);
        bar.value = 0;
        row.append(bar);
        this.incoming.set(id, { name, size, sha256, chunks: [], received: 0, row });
        this.sendControl({ type: 'file_accept', id });
        if (size === 0) this.finishIncoming(id);
      }

      async onChunk(buffer) {
        if (buffer.byteLength < 4) return;
        const id = new DataView(buffer).getUint32(0, false);
        const file = this.incoming.get(id);
        if (!file) {
          log('chunk for an unknown transfer', id);
          return;
        }
        const bytes = buffer.slice(4);
        if (file.received + bytes.byteLength > file.size) {
          this.incoming.delete(id);
          const error = `the sender sent more than the ${file.size} bytes it announced`;
          this.sendControl({ type: 'file_result', id, ok: false, error });
          setFileRow(file.row, `${file.name}: ${error}`, 'bad');
          confab.filesReceived.push({ name: file.name, size: file.size, sha256: file.sha256, ok: false, error });
          return;
        }
        file.chunks.push(bytes);
        file.received += bytes.byteLength;
        setProgress(file.row, file.received);
        if (file.received === file.size) await this.finishIncoming(id);
      }

      async finishIncoming(id) {
        const file = this.incoming.get(id);
        if (!file) return;
        this.incoming.delete(id);
        const blob = new Blob(file.chunks);
        file.chunks = [];
        const digest = await sha256Hex(await blob.arrayBuffer());
        const ok = digest === file.sha256;
        const error = ok ? null : 'the file arrived damaged (SHA-256 mismatch)';
        this.sendControl({ type: 'file_result', id, ok, error });
        confab.filesReceived.push({ name: file.name, size: file.size, sha256: digest, ok, error });
        if (ok) {
          setFileRow(file.row, `${file.name} (${formatBytes(file.size)}) received, SHA-256 verified `, 'ok');
          const link = document.createElement('a');
          link.href = URL.createObjectURL(blob);
          link.download = file.name;
          link.textContent = 'download';
          file.row.append(link);
        } else {
          setFileRow(file.row, `${file.name}: ${error}`, 'bad');
        }
      }

      // -- files: sending --

      async offerFile(file) {
        if (!this.channels[CONTROL_LABEL] || !this.channels[FILE_LABEL]) {
          this.queuedFiles.push(file);
          return;
        }
        const id = this.nextFileId++;
        const row = addFileRow(`${file.name}: hashing`, '', file.size);
        let sha256;
        try {
          sha256 = await sha256Hex(await file.arrayBuffer());
        } catch (err) {
          setFileRow(row, `cannot send ${file.name}: ${err.message}`, 'bad');
          return;
        }
        this.outgoing.set(id, { file, name: file.name, size: file.size, sha256, row });
        setFileRow(row, `${file.name}: offered, waiting for the other side`);
        this.sendControl({ type: 'file_offer', id, name: file.name, size: file.size, sha256 });
      }

      /** Streams an accepted file in 16 KiB chunks, pausing while the channel's buffer is full. */
      async streamFile(id) {
        const out = this.outgoing.get(id);
        const dc = this.channels[FILE_LABEL];
        if (!out || !dc) return;
        setFileRow(out.row, `${out.name}: sending`);
        dc.bufferedAmountLowThreshold = SEND_BUFFER_LOW;
        try {
          for (let offset = 0; offset < out.size; offset += CHUNK_BYTES) {
            if (!this.outgoing.has(id) || this.closed) return;
            const bytes = new Uint8Array(await out.file.slice(offset, offset + CHUNK_BYTES).arrayBuffer());
            const message = new Uint8Array(4 + bytes.length);
            new DataView(message.buffer).setUint32(0, id, false);
            message.set(bytes, 4);
            while (dc.bufferedAmount > SEND_BUFFER_HIGH) {
              if (dc.readyState !== 'open') throw new Error('the file channel closed');
              await new Promise((resolve) => {
                dc.addEventListener('bufferedamountlow', resolve, { once: true });
                setTimeout(resolve, 1000); // and look again in case the event never comes
              });
            }
            dc.send(message);
            setProgress(out.row, Math.min(out.size, offset + bytes.length));
          }
          setFileRow(out.row, `${out.name}: sent, waiting for the other side to verify`);
        } catch (err) {
          this.sendControl({ type: 'file_cancel', id });
          this.finishOutgoing(id, false, `sending failed: ${err.message}`);
        }
      }

      finishOutgoing(id, ok, error) {
        const out = this.outgoing.get(id);
        if (!out) return;
        this.outgoing.delete(id);
        confab.filesSent.push({ name: out.name, size: out.size, sha256: out.sha256, ok, error });
        if (ok) setFileRow(out.row, `${out.name} (${formatBytes(out.size)}) delivered and verified`, 'ok');
        else setFileRow(out.row, `${out.name}: ${error || 'not delivered'}`, 'bad');
      }

      // -- the end --

      /** The other side left or hung up: keep the last stats, close, and show why. */
      async end(why) {
        if (this.closed || this.ending) return;
        this.ending = true; // a `peer_left` may follow the `bye` while the stats are read
        lastStats = await collectStats(this.pc);
        this.close();
        showMessage(`${why} Join again to start a new call.`);
        setState('ended');
      }

      /** Hangs up: tells the other side, leaves the room, closes everything. */
      async hangup() {
        if (this.closed || this.ending) return;
        this.ending = true;
        this.signal({ kind: 'bye' });
        this.send({ type: 'leave' });
        lastStats = await collectStats(this.pc);
        this.close();
        showMessage('You hung up.');
        setState('ended');
      }

      close() {
        if (this.closed) return;
        this.closed = true;
        clearTimeout(this.joinTimer);
        clearInterval(this.statsTimer);
        clearInterval(this.heartbeatTimer);
        clearTimeout(this.restartTimer);
        clearTimeout(this.offerTimer);
        for (const dc of Object.values(this.channels)) dc.close();
        this.channels = {};
        if (this.pc) this.pc.close();
        if (this.ws) this.ws.close(1000, 'leaving');
        for (const track of this.remoteStream.getTracks()) track.stop();
        ui.remoteVideo.srcObject = null;
        ui.remoteVideo.muted = false;
        ui.unmuteRemote.hidden = true;
        ui.securityCode.hidden = true;
        closeMedia();
        ui.chatInput.disabled = true;
        ui.chatSend.disabled = true;
        ui.fileInput.disabled = true;
      }
    }

    // ---- Remote media ----------------------------------------------------------------------------

    /** Plays the remote stream with sound; when the browser wants a click first, plays muted and
     *  shows a button to turn the sound on. */
    function playRemote() {
      ui.remoteVideo.play().catch(() => {
        ui.remoteVideo.muted = true;
        ui.unmuteRemote.hidden = false;
        ui.remoteVideo.play().catch((err) => log('cannot play the remote video:', err.message));
      });
    }

    function watchFirstFrame(current) {
      const shown = () => {
        if (call !== current) return;
        current.mark('first_frame');
        ui.placeholder.hidden = true;
      };
      if (ui.remoteVideo.requestVideoFrameCallback) ui.remoteVideo.requestVideoFrameCallback(shown);
      else ui.remoteVideo.addEventListener('loadeddata', shown, { once: true });
    }

    // ---- Stats -----------------------------------------------------------------------------------

    /** What getStats says about the call (see `window.confab.stats`). */
    async function collectStats(pc) {
      const out = {
        framesDecoded: 0,
        framesReceived: 0,
        frameWidth: 0,
        frameHeight: 0,
        framesPerSecond: 0,
        freezeCount: 0,
        keyFramesDecoded: 0,
        framesDropped: 0, // received but not decoded or shown
        packetsLost: 0,
        pliCount: 0, // keyframe requests we sent
        nackCount: 0,
        decoder: null,
        audioPacketsReceived: 0,
        audioConcealedSamples: 0,
        audioTotalSamplesReceived: 0,
        audioCodec: null,
        codec: null, // mimeType of the inbound video
        codecFmtp: null,
        framesEncoded: 0,
        keyFramesEncoded: 0,
        pliReceived: 0, // keyframe requests from the other side
        sendCodec: null,
        encoder: null,
        audioPacketsSent: 0,
        candidateType: null, // local end of the selected pair
        remoteCandidateType: null,
        rttMs: null,
        pathBytesReceived: null, // everything the selected pair has brought in
      };
      if (!pc || pc.connectionState === 'closed') return out;
      const report = await pc.getStats();
      const codecOf = (r) => (r.codecId && report.get(r.codecId)) || {};
      let pair = null;
      report.forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video') {
          out.framesDecoded = r.framesDecoded || 0;
          out.framesReceived = r.framesReceived || 0;
          out.frameWidth = r.frameWidth || 0;
          out.frameHeight = r.frameHeight || 0;
          out.framesPerSecond = r.framesPerSecond || 0;
          out.freezeCount = r.freezeCount || 0;
          out.keyFramesDecoded = r.keyFramesDecoded || 0;
          out.framesDropped = r.framesDropped || 0;
          out.packetsLost = r.packetsLost || 0;
          out.pliCount = r.pliCount || 0;
          out.nackCount = r.nackCount || 0;
          out.decoder = r.decoderImplementation || null;
          out.codec = codecOf(r).mimeType || null;
          out.codecFmtp = codecOf(r).sdpFmtpLine || null;
        } else if (r.type === 'inbound-rtp' && r.kind === 'audio') {
          out.audioPacketsReceived = r.packetsReceived || 0;
          out.audioConcealedSamples = r.concealedSamples || 0;
          out.audioTotalSamplesReceived = r.totalSamplesReceived || 0;
          out.audioCodec = codecOf(r).mimeType || null;
        } else if (r.type === 'outbound-rtp' && r.kind === 'video') {
          out.framesEncoded = r.framesEncoded || 0;
          out.keyFramesEncoded = r.keyFramesEncoded || 0;
          out.pliReceived = (r.pliCount || 0) + (r.firCount || 0);
          out.sendCodec = codecOf(r).mimeType || null;
          out.encoder = r.encoderImplementation || null;
        } else if (r.type === 'outbound-rtp' && r.kind === 'audio') {
          out.audioPacketsSent = r.packetsSent || 0;
        } else if (r.type === 'transport' && r.selectedCandidatePairId) {
          pair = report.get(r.selectedCandidatePairId) || pair;
        } else if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded' && !pair) {
          pair = r;
        }
      });
      if (pair) {
        const local = report.get(pair.localCandidateId) || {};
        const remote = report.get(pair.remoteCandidateId) || {};
        out.candidateType = local.candidateType || null;
        out.remoteCandidateType = remote.candidateType || null;
        out.pathBytesReceived = pair.bytesReceived || 0;
        if (pair.currentRoundTripTime !== undefined) out.rttMs = Math.round(pair.currentRoundTripTime * 1000 * 10) / 10;
      }
      return out;
    }

    /** Stats of the current call, or the last ones of the call that ended. */
    async function stats() {
      if (call && !call.closed && call.pc) return collectStats(call.pc);
      return lastStats || collectStats(null);
    }

    async function showStats() {
      const current = call;
      if (!current || current.closed) return;
      const s = await collectStats(current.pc);
      current.noteFlow(s.pathBytesReceived);
      const codec = s.codec ? s.codec.replace('video/', '') : '-';
      ui.callStats.textContent = `${s.frameWidth}x${s.frameHeight} ${Math.round(s.framesPerSecond)} fps ${codec} · `
        + `${s.framesDecoded} frames · ${s.candidateType || '-'} > ${s.remoteCandidateType || '-'}`
        + (s.rttMs !== null ? ` · rtt ${s.rttMs} ms` : '');
    }

    // ---- Chat and file lists ---------------------------------------------------------------------

    function addChatLine(who, text, mine) {
      const li = document.createElement('li');
      if (mine) li.className = 'mine';
      const name = document.createElement('span');
      name.className = 'who';
      name.textContent = who;
      li.append(name, document.createTextNode(text)); // text only: never parsed as HTML
      ui.chatLog.append(li);
      ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
    }

    function addFileRow(text, cls = '', total = 0) {
      const li = document.createElement('li');
      const label = document.createElement('span');
      li.append(label);
      if (total > 0) {
        const bar = document.createElement('progress');
        bar.max = total;
        bar.value = 0;
        li.append(bar);
      }
      ui.fileList.append(li);
      setFileRow(li, text, cls);
      return li;
    }

    function setFileRow(li, text, cls = '') {
      li.firstChild.textContent = text;
      li.firstChild.className = cls;
      if (cls) {
        const bar = li.querySelector('progress');
        if (bar) bar.remove();
      }
    }

    function setProgress(li, done) {
      const bar = li.querySelector('progress');
      if (bar) bar.value = done;
    }

    function formatBytes(n) {
      if (n < 1024) return `${n} B`;
      if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
      return `${(n / 1024 / 1024).toFixed(1)} MiB`;
    }

    /** The code to read to each other, or why there is none. */
    function showSecurityCode(code, problem = null) {
      ui.securityCode.hidden = false;
      ui.securityCode.textContent = code ? `Security code ${code}` : problem;
      ui.securityCode.title = code
        ? 'Read this number to each other: if it matches, nobody (not even the server) sits in the middle of your call.'
        : '';
      ui.securityCode.classList.toggle('bad', !code);
    }

    function showInvite(room) {
      // Readable: ':' and '/' need no escaping in a query value.
      const escape = (v) => encodeURIComponent(v).replace(/%3A/gi, ':').replace(/%2F/gi, '/');
      let invite = `${location.origin}${location.pathname}?room=${room}`;
      if (params.get('server')) invite += `&server=${escape(params.get('server'))}`;
      ui.inviteLink.href = invite;
      ui.inviteLink.textContent = invite;
      ui.invite.hidden = false;
      // So a reload rejoins the same room.
      const here = new URL(location.href);
      here.searchParams.set('room', room);
      history.replaceState(null, '', here.toString());
    }

    // ---- Actions ---------------------------------------------------------------------------------

    /** Joins the room in the form (or a new room when it is empty). */
    async function join() {
      if (call && !call.closed) return;
      const typed = ui.room.value.trim();
      let room = null;
      if (typed) {
        const parsed = parseRoomCode(typed);
        if (parsed.error) {
          confab.error = parsed.error;
          showMessage(`That is not a room code: ${parsed.error}.`, true);
          setState('error');
          return;
        }
        room = parsed.code;
        ui.room.value = room;
      }
      const name = Array.from(ui.name.value.trim() || 'Browser').slice(0, MAX_NAME_CHARS).join('');
      try {
        localStorage.setItem('confab.name', name);
      } catch (err) {
        // Storage may be off (private windows); the name is only a convenience.
      }
      let serverUrl;
      try {
        serverUrl = signalingUrl(location, params);
      } catch (err) {
        confab.error = `Bad ?server= address: ${err.message}`;
        showMessage(confab.error, true);
        setState('error');
        return;
      }
      confab.error = null;
      confab.room = room;
      confab.server = serverUrl;
      confab.peer = null;
      confab.timing = {};
      confab.iceRestarts = 0;
      confab.resumes = 0;
      confab.offersResent = 0;
      confab.chatReceived = [];
      confab.chatSent = [];
      confab.filesReceived = [];
      confab.filesSent = [];
      lastStats = null;
      ui.chatLog.replaceChildren();
      ui.fileList.replaceChildren();
      ui.callStats.textContent = '';
      showMessage('');
      call = new Call(serverUrl, room, name);
      setState('joining');
      await openMedia();
      updateToggles();
      if (call.closed) return;
      call.t0 = performance.now(); // timings count from the moment signaling starts
      call.start();
    }

    async function hangup() {
      if (call) await call.hangup();
    }

    function sendChat(text) {
      if (!call || call.closed) throw new Error('not in a call');
      call.chat(text);
    }

    /** Opens `n` data channels with labels the other side does not use (see `foreignChannels`). */
    function openForeignChannels(n) {
      if (!call || call.closed || !call.pc) throw new Error('not in a call');
      for (let i = 0; i < n; i++) {
        const channel = call.pc.createDataChannel(`foreign-${confab.foreignChannels.opened}`);
        confab.foreignChannels.opened += 1;
        channel.onclose = () => {
          confab.foreignChannels.closed += 1;
        };
      }
    }

    /** Offers a File (from the file input, or made by a test) to the other side. */
    function sendFile(file) {
      if (!call || call.closed) throw new Error('not in a call');
      return call.offerFile(file);
    }

    ui.lobby.addEventListener('submit', (event) => {
      event.preventDefault();
      join();
    });
    ui.hangup.addEventListener('click', () => hangup());
    ui.chatForm.addEventListener('submit', (event) => {
      event.preventDefault();
      const text = ui.chatInput.value;
      if (!text.trim() || !call) return;
      call.chat(text);
      ui.chatInput.value = '';
    });
    ui.fileInput.addEventListener('change', () => {
      for (const file of ui.fileInput.files) if (call && !call.closed) call.offerFile(file);
      ui.fileInput.value = '';
    });
    // The browser went offline and back (a page sees no addresses; this is its sign that the
    // machine's network changed, seconds before ICE notices).
    window.addEventListener('offline', () => log('the browser is offline'));
    window.addEventListener('online', () => {
      if (call && !call.closed) call.onNetworkChanged();
    });
    document.addEventListener('visibilitychange', () => {
      if (call && !call.closed) call.askForVideo();
    });
    window.addEventListener('pagehide', () => {
      if (call && !call.closed) {
        call.signal({ kind: 'bye' });
        call.send({ type: 'leave' });
        call.close();
      }
    });

    // ---- Start -----------------------------------------------------------------------------------

    const fromUrl = roomFromUrl(location, params);
    if (fromUrl) {
      const parsed = parseRoomCode(fromUrl);
      ui.room.value = parsed.code || fromUrl;
    }
    let savedName = '';
    try {
      savedName = localStorage.getItem('confab.name') || '';
    } catch (err) {
      // No storage: no remembered name.
    }
    ui.name.value = params.get('name') || savedName;
    setState('idle');
    updateToggles();
    if (typeof RTCPeerConnection === 'undefined') {
      confab.error = 'This browser has no WebRTC (RTCPeerConnection), so it cannot join a call.';
      showMessage(confab.error, true);
      ui.join.disabled = true;
    } else if (params.get('autojoin') === '1' && fromUrl) {
      join();
    }
  })();
}
