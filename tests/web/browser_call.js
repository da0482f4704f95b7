#!/usr/bin/env node
// One browser side of a Confab call, for interop tests: launches Debian's headless Chromium
// (/usr/bin/chromium through playwright-core; browsers are never downloaded) with fake camera and
// microphone, opens the Confab web page (signaling/web/) with a room in its URL, waits until the
// call is connected and enough remote video frames were decoded, optionally sends chat messages
// and files, and prints ONE JSON line on stdout with what `window.confab` reports, plus a
// per-second `timeline` sampled from the page's RTCPeerConnection (sent and received video rate,
// frame rate, size, freezes, audio concealed). The page's console goes to stderr.
//
// Exit status: 0 when the call connected and the goals were met (decoded frames, and the chat
// messages and files asked for with --expect-chat / --expect-files); 1 when not, with the reason
// in the JSON's "reason"; 2 for a usage error or a browser that would not start.
//
// Usage:
//   node browser_call.js URL [--frames N] [--timeout SECS] [--chat TEXT]... [--expect-chat N]
//        [--send-file PATH]... [--expect-files N] [--hold SECS] [--fake-video FILE.y4m]
//        [--fake-audio FILE.wav]
//        [--deny-media] [--no-h264] [--foreign-channels N] [--chromium PATH]
// URL is the page with its room, e.g.
//   http://127.0.0.1:8000/?room=kfq-wmzt-pxd&autojoin=1&server=ws://127.0.0.1:8443/ws

'use strict';

const path = require('path');
const { chromium } = require('playwright-core');

const USAGE = `usage: node browser_call.js URL [options]
  --frames N            remote video frames that must be decoded (default 30)
  --timeout SECS        give up when the goals are not met within this long (default 30)
  --chat TEXT           send a chat message once connected (repeatable)
  --expect-chat N       also wait until N chat messages have arrived (default 0)
  --send-file PATH      offer a file once the data channels are open (repeatable)
  --expect-files N      also wait until N files have arrived and verified (default 0)
  --hold SECS           after the goals are met, stay in the call this long or until the other
                        side leaves (default 0), so that it can finish its own measurements
  --fake-video FILE     camera from a .y4m file (--use-file-for-fake-video-capture)
  --fake-audio FILE     microphone from a .wav file (--use-file-for-fake-audio-capture)
  --deny-media          refuse camera and microphone: the page joins receive-only (use
                        --frames 0 when the other side sends nothing either)
  --foreign-channels N  once connected, open N data channels the other side has no use for,
                        and also wait until the other side has closed every one of them
  --no-h264             hide H.264 from the page's codec capabilities, so it offers and
                        answers VP8 (and the like) only: a browser that cannot do H.264
  --hide FROM:TO        during --hold, the page is hidden from FROM to TO seconds into it: its
                        document reports visibilityState "hidden" and fires visibilitychange
                        (headless Chromium shows every page, so this is done in the page's DOM,
                        as a tab sent to the background would look to the page's script)
  --mute-at SECS        during --hold, click Mute SECS seconds into it (the JSON's
                        mutedNotices says how often the page then told its user they were
                        speaking while muted)
  --chromium PATH       the browser (default /usr/bin/chromium)`;

/**
 * Chromium's switches: headless, no name lookups, fake devices, loopback ICE. `hosts` are the hosts
 * the page must reach (its own and the signaling server's): `MAP *` catches IP literals too, so
 * each of them is excluded from the rule that makes every other lookup fail.
 */
function chromiumArgs(opts, hosts) {
  const exclude = ['localhost', ...hosts.filter((h) => h !== 'localhost')].map((h) => `EXCLUDE ${h}`);
  const args = [
    '--no-sandbox', // we run as root
    '--headless',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--use-fake-device-for-media-stream',
    // Answers the permission prompt for camera and microphone: yes, or no with --deny-media.
    opts.denyMedia ? '--use-fake-ui-for-media-stream=deny' : '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection',
    // No quotes: the arguments reach Chromium without a shell in between.
    `--host-resolver-rules=MAP * ~NOTFOUND , ${exclude.join(' , ')}`,
    // Play remote audio without a click (the page also copes without this).
    '--autoplay-policy=no-user-gesture-required',
  ];
  // A page served from a lab address (not localhost) is no secure context, and would get no
  // camera or microphone: trust the page's own origin, as a test of a real https site would.
  const origin = new URL(opts.url).origin;
  if (!/^https:|^http:\/\/(localhost|127\.0\.0\.1)(:|$)/.test(origin)) {
    args.push(`--unsafely-treat-insecure-origin-as-secure=${origin}`);
  }
  if (opts.fakeVideo) args.push(`--use-file-for-fake-video-capture=${path.resolve(opts.fakeVideo)}`);
  if (opts.fakeAudio) args.push(`--use-file-for-fake-audio-capture=${path.resolve(opts.fakeAudio)}`);
  return args;
}

function parseArgs(argv) {
  const opts = {
    url: null,
    frames: 30,
    timeout: 30,
    chat: [],
    expectChat: 0,
    sendFile: [],
    expectFiles: 0,
    hold: 0,
    fakeVideo: null,
    fakeAudio: null,
    denyMedia: false,
    noH264: false,
    foreignChannels: 0,
    hide: null, // [from, to] seconds into --hold
    muteAt: null, // seconds into --hold
    chromium: '/usr/bin/chromium',
  };
  const number = (flag, value) => {
    const n = Number(value);
    if (value === undefined || !Number.isFinite(n) || n < 0) throw new Error(`${flag} needs a number, got ${value}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    switch (arg) {
      case '--frames': opts.frames = number(arg, value()); break;
      case '--timeout': opts.timeout = number(arg, value()); break;
      case '--chat': opts.chat.push(value()); break;
      case '--expect-chat': opts.expectChat = number(arg, value()); break;
      case '--send-file': opts.sendFile.push(path.resolve(value())); break;
      case '--expect-files': opts.expectFiles = number(arg, value()); break;
      case '--hold': opts.hold = number(arg, value()); break;
      case '--fake-video': opts.fakeVideo = value(); break;
      case '--fake-audio': opts.fakeAudio = value(); break;
      case '--deny-media': opts.denyMedia = true; break;
      case '--no-h264': opts.noH264 = true; break;
      case '--foreign-channels': opts.foreignChannels = number(arg, value()); break;
      case '--hide': {
        const [from, to] = value().split(':').map((v) => number(arg, v));
        if (!(to > from)) throw new Error('--hide needs FROM:TO with TO after FROM');
        opts.hide = [from, to];
        break;
      }
      case '--mute-at': opts.muteAt = number(arg, value()); break;
      case '--chromium': opts.chromium = value(); break;
      case '-h':
      case '--help':
        console.error(USAGE);
        process.exit(0);
        break;
      default:
        if (arg.startsWith('-') || opts.url) throw new Error(`unexpected argument ${arg}`);
        opts.url = arg;
    }
  }
  if (!opts.url) throw new Error('the page URL is missing');
  return opts;
}

/** The hosts the page talks to: its own, and the signaling server's from `?server=`. */
function pageHosts(url) {
  const page = new URL(url);
  const hosts = new Set([page.hostname]);
  const server = page.searchParams.get('server');
  if (server) hosts.add(new URL(server).hostname);
  return [...hosts];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs in the page: the document is hidden (or shown), as for a tab sent to the background. */
function setHidden(hidden) {
  Object.defineProperty(document, 'visibilityState', {
    configurable: true,
    get: () => (hidden ? 'hidden' : 'visible'),
  });
  Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
  document.dispatchEvent(new Event('visibilitychange'));
}

/** What the page says about itself, in one round trip. */
async function snapshot(page) {
  return page.evaluate(async () => {
    const c = window.confab;
    if (!c) return null;
    return {
      state: c.state,
      error: c.error,
      room: c.room,
      media: c.media,
      securityCode: c.securityCode,
      securityError: c.securityError,
      chatReceived: c.chatReceived.slice(),
      chatSent: c.chatSent.slice(),
      filesReceived: c.filesReceived.slice(),
      filesSent: c.filesSent.slice(),
      timing: { ...c.timing },
      iceRestarts: c.iceRestarts || 0,
      resumes: c.resumes || 0,
      offersResent: c.offersResent || 0,
      foreignChannels: { ...c.foreignChannels },
      videoLimit: c.videoLimit,
      askedLeastVideo: c.askedLeastVideo,
      stats: await c.stats(),
    };
  });
}

/**
 * Runs in the page before its own script: remembers every RTCPeerConnection it makes and, once a
 * second, appends what the newest one did in that second to `window.__timeline` (the fields
 * mirror the native peer's `--stats-json` timeline where they can). Also notes in `window.__marks`
 * the wall-clock ms of the page's first createOffer (`offer_epoch_ms`), of its first shown
 * remote frame (`first_frame_epoch_ms`, the page's own requestVideoFrameCallback), and of every
 * frame shown after it (`frame_epochs_ms`), which line up across processes on one machine.
 */
function sampleEverySecond() {
  const Native = window.RTCPeerConnection;
  if (!Native) return;
  const marks = {};
  window.__marks = marks;
  const epochMs = () => performance.timeOrigin + performance.now();
  const createOffer = Native.prototype.createOffer;
  Native.prototype.createOffer = function (...args) {
    if (marks.offer_epoch_ms === undefined) marks.offer_epoch_ms = epochMs();
    return createOffer.apply(this, args);
  };
  const frameCallback = window.HTMLVideoElement && HTMLVideoElement.prototype.requestVideoFrameCallback;
  if (frameCallback) {
    // Every frame shown by a video element the page watches, by wall clock (bounded), so a
    // benchmark can find the first frame after a network event.
    marks.frame_epochs_ms = [];
    const watched = new WeakSet();
    const watch = (video) => {
      if (watched.has(video)) return;
      watched.add(video);
      const onFrame = () => {
        if (marks.frame_epochs_ms.length < 20000) marks.frame_epochs_ms.push(Math.round(epochMs()));
        frameCallback.call(video, onFrame);
      };
      frameCallback.call(video, onFrame);
    };
    HTMLVideoElement.prototype.requestVideoFrameCallback = function (callback) {
      watch(this);
      return frameCallback.call(this, (...args) => {
        if (marks.first_frame_epoch_ms === undefined) marks.first_frame_epoch_ms = epochMs();
        return callback(...args);
      });
    };
  }
  const pcs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      pcs.push(this);
    }
  };
  const timeline = [];
  window.__timeline = timeline;
  const t0 = performance.now();
  let prev = null;
  setInterval(async () => {
    const pc = pcs[pcs.length - 1];
    if (!pc || pc.connectionState === 'closed') return;
    const now = { t: performance.now() };
    let report;
    try {
      report = await pc.getStats();
    } catch (err) {
      return;
    }
    let pair = null;
    report.forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') {
        now.bytesSent = (now.bytesSent || 0) + (r.bytesSent || 0);
        now.framesEncoded = (now.framesEncoded || 0) + (r.framesEncoded || 0);
        now.encodeS = (now.encodeS || 0) + (r.totalEncodeTime || 0);
        now.keyFramesEncoded = (now.keyFramesEncoded || 0) + (r.keyFramesEncoded || 0);
        now.sendWidth = r.frameWidth || 0;
        now.sendHeight = r.frameHeight || 0;
        now.limitation = r.qualityLimitationReason || null;
        now.targetKbps = r.targetBitrate ? r.targetBitrate / 1000 : null;
      } else if (r.type === 'inbound-rtp' && r.kind === 'video') {
        now.bytesReceived = r.bytesReceived || 0;
        now.framesDecoded = r.framesDecoded || 0;
        now.decodeS = r.totalDecodeTime || 0;
        now.freezes = r.freezeCount || 0;
        now.freezeS = r.totalFreezesDuration || 0;
        now.recvWidth = r.frameWidth || 0;
        now.recvHeight = r.frameHeight || 0;
      } else if (r.type === 'inbound-rtp' && r.kind === 'audio') {
        now.concealed = r.concealedSamples || 0;
        now.samples = r.totalSamplesReceived || 0;
        now.jbDelayS = r.jitterBufferDelay || 0;
        now.jbTargetS = r.jitterBufferTargetDelay || 0;
        now.jbEmitted = r.jitterBufferEmittedCount || 0;
        // The sender's NTP time (ms since 1900) of the audio playing now, by its sender reports.
        now.playoutNtpMs = r.estimatedPlayoutTimestamp;
        now.playoutAt = Date.now();
      } else if (r.type === 'media-playout') {
        now.playoutDelayS = r.totalPlayoutDelay || 0;
        now.playoutSamples = r.totalSamplesCount || 0;
      } else if (r.type === 'transport' && r.selectedCandidatePairId) {
        pair = report.get(r.selectedCandidatePairId) || pair;
      }
    });
    if (prev && pc === prev.pc) {
      const secs = (now.t - prev.t) / 1000;
      const rate = (key) => Math.max(0, (now[key] || 0) - (prev[key] || 0)) / secs;
      const samples = (now.samples || 0) - (prev.samples || 0);
      // Per sample emitted (or played) in this second, in ms; null when none was.
      const perSample = (total, count) => {
        const n = (now[count] || 0) - (prev[count] || 0);
        return n > 0 ? (((now[total] || 0) - (prev[total] || 0)) * 1000) / n : null;
      };
      timeline.push({
        t_s: Math.round((now.t - t0) / 100) / 10,
        epoch_ms: Date.now(), // wall clock, to line samples up with a network scenario
        send_kbps: (rate('bytesSent') * 8) / 1000,
        target_kbps: now.targetKbps,
        send_width: now.sendWidth || 0,
        send_height: now.sendHeight || 0,
        send_fps: rate('framesEncoded'),
        keyframes_sent: (now.keyFramesEncoded || 0) - (prev.keyFramesEncoded || 0),
        quality_limitation: now.limitation || null,
        recv_kbps: (rate('bytesReceived') * 8) / 1000,
        recv_fps: rate('framesDecoded'),
        recv_width: now.recvWidth || 0,
        recv_height: now.recvHeight || 0,
        freezes: now.freezes || 0,
        freeze_s: now.freezeS || 0,
        audio_concealed: samples > 0 ? Math.max(0, (now.concealed || 0) - (prev.concealed || 0)) / samples : 0,
        audio_concealed_total: now.concealed || 0,
        audio_samples_total: now.samples || 0,
        // Audio in the jitter buffer (NetEq) when played, and its target, ms.
        audio_jitter_buffer_ms: perSample('jbDelayS', 'jbEmitted'),
        audio_jitter_target_ms: perSample('jbTargetS', 'jbEmitted'),
        // From the audio device's callback to the speaker, ms (media-playout stats).
        audio_playout_delay_ms: perSample('playoutDelayS', 'playoutSamples'),
        // Mouth to ear by the sender reports: now, less the sender's NTP time of the audio
        // playing now (NTP counts from 1900, the wall clock from 1970). One machine, one clock.
        audio_mouth_to_ear_ms: now.playoutNtpMs ? now.playoutAt - (now.playoutNtpMs - 2208988800000) : null,
        // Cumulative, for ms per frame: total_encode_s / frames_encoded_total.
        frames_encoded_total: now.framesEncoded || 0,
        total_encode_s: now.encodeS || 0,
        frames_decoded_total: now.framesDecoded || 0,
        total_decode_s: now.decodeS || 0,
        rtt_ms: pair && pair.currentRoundTripTime !== undefined ? pair.currentRoundTripTime * 1000 : null,
        available_kbps: pair && pair.availableOutgoingBitrate ? pair.availableOutgoingBitrate / 1000 : null,
      });
    }
    now.pc = pc;
    prev = now;
  }, 1000);
}

/** What is still missing, or null when every goal is met. */
function missing(opts, snap) {
  if (snap.state !== 'connected') return `not connected (state ${snap.state})`;
  if (snap.stats.framesDecoded < opts.frames) return `decoded ${snap.stats.framesDecoded} of ${opts.frames} remote video frames`;
  const chats = snap.chatReceived.length;
  if (chats < opts.expectChat) return `received ${chats} of ${opts.expectChat} chat messages`;
  const verified = snap.filesReceived.filter((f) => f.ok).length;
  if (verified < opts.expectFiles) return `received ${verified} of ${opts.expectFiles} files intact`;
  const closed = snap.foreignChannels.closed;
  if (closed < opts.foreignChannels) return `the other side closed ${closed} of ${opts.foreignChannels} foreign data channels`;
  return null;
}

async function run(opts, result) {
  const tStart = Date.now();
  const browser = await chromium.launch({
    executablePath: opts.chromium,
    headless: true,
    chromiumSandbox: false,
    args: chromiumArgs(opts, pageHosts(opts.url)),
    // Playwright mutes audio in headless mode; a call test wants the audio path as in real use.
    ignoreDefaultArgs: ['--mute-audio'],
    timeout: 30000,
  });
  try {
    result.browserVersion = browser.version();
    const context = await browser.newContext();
    if (opts.noH264) {
      // The page puts H.264 first with setCodecPreferences(getCapabilities()): without H.264 in
      // the capabilities, its preferences leave H.264 out of every offer and answer.
      await context.addInitScript(() => {
        for (const api of [window.RTCRtpReceiver, window.RTCRtpSender]) {
          if (!api || !api.getCapabilities) continue;
          const original = api.getCapabilities.bind(api);
          api.getCapabilities = (kind) => {
            const caps = original(kind);
            if (caps && kind === 'video') caps.codecs = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== 'video/h264');
            return caps;
          };
        }
      });
    }
    const page = await context.newPage();
    // Stamped with the wall clock, as the native peer's log lines are, so the two line up.
    const stamp = () => new Date().toISOString();
    page.on('console', (msg) => console.error(`${stamp()} [page ${msg.type()}] ${msg.text()}`));
    page.on('pageerror', (err) => console.error(`${stamp()} [page exception] ${err.message}`));
    await page.addInitScript(sampleEverySecond);
    result.msToLaunch = Date.now() - tStart;
    // The page asks before keeping a file; files this run expects are accepted (?acceptfiles=1).
    const pageUrl = new URL(opts.url);
    if (opts.expectFiles > 0) pageUrl.searchParams.set('acceptfiles', '1');
    await page.goto(pageUrl.toString(), { waitUntil: 'load', timeout: 15000 });
    // On a slow or lossy link the page's script may still be on its way after 'load'.
    await page.waitForFunction(() => window.confab, null, { timeout: 15000 }).catch(() => {});

    // The page joins by itself with ?autojoin=1; otherwise press Join.
    const autojoin = new URL(opts.url).searchParams.get('autojoin') === '1';
    if (!autojoin) await page.click('#join');

    const deadline = Date.now() + opts.timeout * 1000;
    let chatsSent = false;
    let filesSent = false;
    let foreignOpened = false;
    let snap = null;
    let why = 'timed out';
    for (;;) {
      snap = await snapshot(page);
      if (!snap) throw new Error('the page has no window.confab (is this the Confab page?)');
      if (snap.state === 'error') {
        why = `the page reports an error: ${snap.error}`;
        break;
      }
      if (snap.state === 'ended') {
        const need = missing(opts, { ...snap, state: 'connected' });
        why = `the call ended before the goals were met${need ? `: ${need}` : ''}`;
        break;
      }
      if (snap.state === 'connected' && !chatsSent) {
        chatsSent = true;
        for (const text of opts.chat) await page.evaluate((t) => window.confab.sendChat(t), text);
      }
      if (snap.state === 'connected' && !foreignOpened && opts.foreignChannels > 0) {
        foreignOpened = true;
        await page.evaluate((n) => window.confab.openForeignChannels(n), opts.foreignChannels);
      }
      if (snap.state === 'connected' && !filesSent && opts.sendFile.length) {
        // The file input is enabled once both data channels are open.
        if (await page.isEnabled('#file-input')) {
          filesSent = true;
          await page.setInputFiles('#file-input', opts.sendFile);
        }
      }
      const need = missing(opts, snap);
      if (!need) {
        why = null;
        break;
      }
      if (Date.now() > deadline) {
        why = `timed out after ${opts.timeout} s: ${need}`;
        break;
      }
      await sleep(200);
    }
    result.ok = why === null;
    result.reason = why;
    result.msToGoal = result.ok ? Date.now() - tStart : null;

    if (result.ok && opts.hold > 0) {
      // Stay so the other side can measure what we send (and deliver its files and chat).
      const holdFrom = Date.now();
      const holdUntil = holdFrom + opts.hold * 1000;
      let hidden = false;
      let muted = false;
      while (Date.now() < holdUntil) {
        await sleep(250);
        if (opts.muteAt !== null && !muted && (Date.now() - holdFrom) / 1000 >= opts.muteAt) {
          muted = true;
          await page.click('#toggle-mic');
        }
        if (opts.hide) {
          const at = (Date.now() - holdFrom) / 1000;
          const hide = at >= opts.hide[0] && at < opts.hide[1];
          if (hide !== hidden) {
            hidden = hide;
            await page.evaluate(setHidden, hide);
          }
        }
        const state = await page.evaluate(() => window.confab.state);
        if (state !== 'connected' && state !== 'connecting') break;
      }
      snap = await snapshot(page);
    }
    Object.assign(result, summarize(snap));
    result.timeline = await page.evaluate(() => window.__timeline || []);
    result.marks = await page.evaluate(() => window.__marks || {});
    result.mutedNotices = await page.evaluate(() => window.confab.mutedNotices);
    // Hang up properly (bye + leave), so the other side ends its call at once rather than
    // waiting for ICE to time out.
    await page.evaluate(() => window.confab.hangup()).catch(() => {});
  } finally {
    await browser.close().catch(() => {});
  }
}

/** The JSON line: the headline numbers first, then everything the page knows. */
function summarize(snap) {
  const s = snap.stats;
  return {
    state: snap.state,
    error: snap.error,
    room: snap.room,
    media: snap.media,
    securityCode: snap.securityCode,
    securityError: snap.securityError,
    framesDecoded: s.framesDecoded,
    framesReceived: s.framesReceived,
    codec: s.codec,
    codecFmtp: s.codecFmtp,
    frameSize: `${s.frameWidth}x${s.frameHeight}`,
    audioPacketsReceived: s.audioPacketsReceived,
    audioCodec: s.audioCodec,
    candidateType: s.candidateType,
    remoteCandidateType: s.remoteCandidateType,
    msToConnected: snap.timing.connected === undefined ? null : snap.timing.connected,
    msToFirstFrame: snap.timing.first_frame === undefined ? null : snap.timing.first_frame,
    chatSent: snap.chatSent,
    chatReceived: snap.chatReceived,
    filesSent: snap.filesSent,
    filesReceived: snap.filesReceived,
    timing: snap.timing,
    iceRestarts: snap.iceRestarts,
    foreignChannels: snap.foreignChannels,
    videoLimit: snap.videoLimit,
    askedLeastVideo: snap.askedLeastVideo,
    resumes: snap.resumes,
    offersResent: snap.offersResent,
    stats: s,
  };
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`browser_call: ${err.message}\n${USAGE}`);
    process.exit(2);
  }
  const result = { ok: false, reason: null, url: opts.url };
  let status = 1;
  try {
    await run(opts, result);
    status = result.ok ? 0 : 1;
  } catch (err) {
    result.ok = false;
    result.reason = `browser_call failed: ${err.message.split('\n')[0]}`;
    console.error(err.stack || String(err));
    status = result.browserVersion ? 1 : 2;
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exitCode = status;
}

main();
