// A real SIP-over-WebSocket client for the sipsock tests: JsSIP (npm), under Node 20
// with the built-in WebSocket (node --experimental-websocket).
//
//   node --experimental-websocket client.js ws://127.0.0.1:8080 [options] [register]
//
// Connects with JsSIP's own WebSocketInterface, sends an OPTIONS and/or a
// REGISTER through JsSIP, and prints one JSON line per answer:
//   {"method":"OPTIONS","status":200,"reason":"OK","via":"SIP/2.0/WS ..."}
// then {"done":true}. Exit status 0 when every request got an answer (any
// status), 1 when one failed without an answer, 2 on a timeout.
// For wss:, trust the test CA with NODE_EXTRA_CA_CERTS.
'use strict';

if (typeof WebSocket === 'undefined') {
  console.error('no global WebSocket: run node 20 with --experimental-websocket');
  process.exit(3);
}

const JsSIP = require('jssip');

const url = process.argv[2];
const wanted = process.argv.slice(3);
const requests = wanted.length ? wanted : ['options'];
const host = new URL(url).host;

function print(object) {
  process.stdout.write(JSON.stringify(object) + '\n');
}

function answer(method, response) {
  print({
    method,
    status: response.status_code,
    reason: response.reason_phrase,
    via: response.getHeader('Via'),
  });
}

const ua = new JsSIP.UA({
  sockets: [new JsSIP.WebSocketInterface(url)],
  uri: `sip:jssip@${host.split(':')[0]}`,
  register: false,
  connection_recovery_min_interval: 2,
  connection_recovery_max_interval: 2,
  user_agent: 'JsSIP sipsock-test',
});

let pending = requests.length;
let failed = false;

function finished() {
  pending -= 1;
  if (pending === 0) {
    print({ done: true });
    ua.stop();
    setTimeout(() => process.exit(failed ? 1 : 0), 200);
  }
}

const timer = setTimeout(() => {
  print({ error: 'timeout' });
  process.exit(2);
}, 20000);
timer.unref();

ua.on('connected', () => {
  print({ connected: url });
  if (requests.includes('options')) {
    ua.sendOptions(`sip:ping@${host}`, null, {
      eventHandlers: {
        succeeded: (e) => {
          answer('OPTIONS', e.response);
          finished();
        },
        failed: (e) => {
          if (e.response) {
            answer('OPTIONS', e.response);
          } else {
            failed = true;
            print({ method: 'OPTIONS', error: String(e.cause) });
          }
          finished();
        },
      },
    });
  }
  if (requests.includes('register')) {
    ua.register();
  }
});

ua.on('registered', (e) => {
  answer('REGISTER', e.response);
  finished();
});

ua.on('registrationFailed', (e) => {
  if (e.response) {
    answer('REGISTER', e.response);
  } else {
    failed = true;
    print({ method: 'REGISTER', error: String(e.cause) });
  }
  finished();
});

ua.on('disconnected', (e) => {
  if (pending > 0) {
    print({ disconnected: true, code: e && e.code, reason: e && e.reason });
  }
});

ua.start();
