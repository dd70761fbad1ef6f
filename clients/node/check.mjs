// CI check of calling billpay-gateway from Node.js against real gateways, as another team's
// service would: @grpc/grpc-js with @grpc/proto-loader loading proto/ at run time (no generated
// code), and protobufjs types from the shipped proto/google/rpc files for the error details.
//
// Starts, on free loopback ports: `billpay-gateway simulate` (the provider simulators, whose
// `GET /_sandbox/calls` counts what reached each provider); a plaintext `serve --sandbox` using
// them; and an mTLS `serve --sandbox` (`[server.tls]` and `[auth] mode = "mtls"` with the test
// certificates of tests/certs). Then checks paying and replaying, the ErrorInfo, BadRequest,
// RetryInfo and ResourceInfo of refused calls, proto-loader's options, health Check and Watch,
// and mutual TLS. Prints one line per check and exits 1 if any failed.
//
//     BILLPAY_BIN=target/debug/billpay-gateway node clients/node/check.mjs
// (clients/node/check.sh installs the locked packages and runs this.)

import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import protobuf from 'protobufjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = process.env.BILLPAY_BIN || path.join(ROOT, 'target', 'debug', 'billpay-gateway');
const PROTO = path.join(ROOT, 'proto');
const CERTS = path.join(ROOT, 'tests', 'certs');

// Field names as in the .proto (request_id, not requestId), int64 as decimal strings, enums as
// their names, unset fields with their defaults, and oneofs named in a virtual property.
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO],
};
const BILLPAY_PROTOS = ['billpay/v1/payment.proto', 'billpay/v1/catalog.proto'];
const billpay = grpc.loadPackageDefinition(protoLoader.loadSync(BILLPAY_PROTOS, LOADER_OPTIONS))
  .billpay.v1;
const health = grpc.loadPackageDefinition(protoLoader.loadSync(healthProtoPath, LOADER_OPTIONS))
  .grpc.health.v1;

// google.rpc.Status and the error details, from the files the repository ships.
const rpc = new protobuf.Root().loadSync(
  ['google/rpc/status.proto', 'google/rpc/error_details.proto'].map((f) => path.join(PROTO, f)),
  { keepCase: true },
);
const Status = rpc.lookupType('google.rpc.Status');

// Every call carries a deadline: grpc-js has no default and would wait for ever. CreatePayment
// answers PENDING shortly before it rather than leave the caller waiting on a slow provider.
const TIMEOUT_MS = 10_000;

// The mTLS gateway's only caller: the SPIFFE id in tests/certs/client.pem, Interswitch only.
const MTLS_CONFIG = `
[server.tls]
cert_file = "${CERTS}/server.pem"
key_file = "${CERTS}/server-key.pem"
client_ca_file = "${CERTS}/ca.pem"

[auth]
mode = "mtls"
payment_id_key = "node-check-payment-id-key"

[[auth.callers]]
name = "checkout"
identity = "spiffe://example.org/ns/shop/sa/checkout"
providers = ["interswitch"]
`;

/** Calls a unary method; resolves with the response, rejects with the grpc-js error. */
function call(client, method, request, deadlineMs = TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + deadlineMs }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

/**
 * The details of a refused call, from its `grpc-status-details-bin` trailer (a serialized
 * google.rpc.Status): `{ErrorInfo, BadRequest, RetryInfo, ResourceInfo, ...}` by type name,
 * each a plain object with the proto's field names. Empty when the gateway sent none.
 */
function errorDetails(error) {
  const [bytes] = error.metadata?.get('grpc-status-details-bin') ?? [];
  if (!bytes) return {};
  const details = {};
  for (const any of Status.decode(bytes).details) {
    // type_url: type.googleapis.com/google.rpc.ErrorInfo
    const type = rpc.lookupType(any.type_url.slice(any.type_url.lastIndexOf('/') + 1));
    details[type.name] = type.toObject(type.decode(any.value), { longs: String, defaults: true });
  }
  return details;
}

/** The error of a call that must be refused; fails if it succeeded. */
async function refused(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('the call succeeded; expected it to be refused');
}

function assert(ok, message) {
  if (!ok) throw new Error(typeof message === 'function' ? message() : message);
}

function assertEqual(actual, expected, what) {
  const [a, e] = [JSON.stringify(actual), JSON.stringify(expected)];
  assert(a === e, () => `${what}: ${a}, expected ${e}`);
}

/** Asserts the status code and ErrorInfo of a refused call; its details. */
function expectError(error, code, reason) {
  const details = errorDetails(error);
  const codeName = (c) => Object.keys(grpc.status).find((k) => grpc.status[k] === c);
  assert(
    error.code === code,
    () => `code ${codeName(error.code)}, expected ${codeName(code)}: ${error.details}`,
  );
  const info = details.ErrorInfo;
  assert(info, () => `no ErrorInfo in ${codeName(error.code)}: ${error.details}`);
  assertEqual(info.domain, 'billpay.gateway', 'ErrorInfo.domain');
  assertEqual(info.reason, reason, 'ErrorInfo.reason');
  return details;
}

/** An Interswitch payment of `minorUnits` kobo to the sandbox's biller 901, product 90101. */
function paymentRequest(requestId, customerId = '0000000000', minorUnits = '150000') {
  return {
    request_id: requestId,
    provider: 'PROVIDER_INTERSWITCH',
    biller_id: '901',
    product_id: '90101',
    customer_id: customerId,
    amount: { currency_code: 'NGN', minor_units: minorUnits },
  };
}

const newRequestId = () => `node-${randomUUID()}`;

/** The first status a Watch of `service` streams; the watch is then cancelled. */
function firstWatched(client, service) {
  return new Promise((resolve, reject) => {
    const watch = client.Watch({ service }, { deadline: Date.now() + TIMEOUT_MS });
    watch.on('data', (answer) => {
      resolve(answer.status);
      watch.cancel();
    });
    watch.on('error', (error) => {
      if (error.code !== grpc.status.CANCELLED) reject(error);
    });
    watch.on('end', () => reject(new Error(`Watch(${service}) ended without a status`)));
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A child process with its output in a log file; stopped by its pid. */
class Child {
  constructor(name, args, workdir) {
    this.name = name;
    this.logPath = path.join(workdir, `${name}.log`);
    // The in-memory store and the command line's configuration only: no REDIS_URL or
    // BILLPAY__ override from the caller's environment. No shutdown grace: stop at once.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => k !== 'REDIS_URL' && !k.startsWith('BILLPAY__')),
    );
    env.BILLPAY__SERVER__SHUTDOWN_GRACE_MS = '0';
    const log = openSync(this.logPath, 'w');
    this.process = spawn(BIN, args, { stdio: ['ignore', log, log], env });
    closeSync(log);
    // A binary that cannot be started emits 'error' and never 'exit'.
    this.exited = new Promise((resolve) => {
      this.process.once('exit', resolve);
      this.process.once('error', (error) => {
        this.spawnError = error;
        resolve();
      });
    });
  }

  alive() {
    return !this.spawnError && this.process.exitCode === null && this.process.signalCode === null;
  }

  async stop() {
    if (!this.alive()) return;
    this.process.kill('SIGTERM');
    const kill = setTimeout(() => this.process.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(kill);
  }

  tail(lines = 30) {
    return readFileSync(this.logPath, 'utf8')
      .split('\n')
      .slice(-lines - 1)
      .join('\n');
  }
}

async function waitUntil(what, child, ready, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.spawnError) throw new Error(`${child.name}: ${child.spawnError.message}`);
    if (!child.alive()) throw new Error(`${child.name} exited before ${what}:\n${child.tail()}`);
    if (await ready().catch(() => false)) return;
    await sleep(200);
  }
  throw new Error(`${child.name}: not ${what} within ${timeoutMs / 1000} s:\n${child.tail()}`);
}

class Checks {
  constructor(simUrl, plainAddress, mtlsAddress) {
    this.simUrl = simUrl;
    this.plainAddress = plainAddress;
    this.mtlsAddress = mtlsAddress;
    const plaintext = grpc.credentials.createInsecure();
    this.payments = new billpay.PaymentService(plainAddress, plaintext);
    this.health = new health.Health(plainAddress, plaintext);
    this.clients = [this.payments, this.health];
  }

  /** How many payments reached the Interswitch simulator. */
  async payCalls() {
    const answer = await fetch(`${this.simUrl}/_sandbox/calls`, {
      signal: AbortSignal.timeout(5000),
    });
    assert(answer.ok, `GET /_sandbox/calls: HTTP ${answer.status}`);
    return (await answer.json()).interswitch?.pay ?? 0;
  }

  async serving(client = this.health) {
    return (await call(client, 'Check', { service: '' }, 2000)).status === 'SERVING';
  }

  /** Credentials for the mTLS gateway with tests/certs/<cert>.pem, or no client certificate. */
  mtlsCredentials(cert) {
    const read = (name) => readFileSync(path.join(CERTS, name));
    return cert
      ? grpc.credentials.createSsl(read('ca.pem'), read(`${cert}-key.pem`), read(`${cert}.pem`))
      : grpc.credentials.createSsl(read('ca.pem'));
  }

  async payThenReplayPaysOnce() {
    const before = await this.payCalls();
    const request = paymentRequest(newRequestId());
    const { payment } = await call(this.payments, 'CreatePayment', request);
    assertEqual(payment.state, 'PAYMENT_STATE_SUCCEEDED', 'state (enums: String)');
    assert(/^pay_[0-9a-f]{32}$/.test(payment.payment_id), `payment_id ${payment.payment_id}`);
    assertEqual(payment.request_id, request.request_id, 'request_id');
    assertEqual(
      payment.amount,
      { currency_code: 'NGN', minor_units: '150000' },
      'amount (longs: String)',
    );
    assertEqual(payment.provider_code, '90000', 'provider_code');
    assert(payment.fulfilment_token, 'product 90101 returns a token');
    // defaults: true: fields the gateway left unset are there, with their zero values.
    assertEqual(payment.description, '', 'description (defaults: true)');
    assertEqual(payment.scheduled_time, null, 'scheduled_time, an unset message (defaults: true)');
    assertEqual(await this.payCalls(), before + 1, 'payments that reached the provider');

    const { payment: replay } = await call(this.payments, 'CreatePayment', request);
    assertEqual(replay.payment_id, payment.payment_id, 'payment_id of the replay');
    assertEqual(
      replay.fulfilment_token,
      payment.fulfilment_token,
      'fulfilment_token of the replay',
    );
    const got = await call(this.payments, 'GetPayment', { payment_id: payment.payment_id });
    assertEqual(
      [got.payment.payment_id, got.payment.state],
      [payment.payment_id, payment.state],
      'GetPayment',
    );
    assertEqual(
      await this.payCalls(),
      before + 1,
      'payments that reached the provider after the replay',
    );

    // The same request_id for another request is refused, and nothing is sent.
    const other = paymentRequest(request.request_id, '0000000000', '160000');
    const error = await refused(call(this.payments, 'CreatePayment', other));
    const { ErrorInfo } = expectError(error, grpc.status.ALREADY_EXISTS, 'IDEMPOTENCY_KEY_REUSED');
    assertEqual(ErrorInfo.metadata.request_id, request.request_id, 'ErrorInfo.metadata.request_id');
    assertEqual(await this.payCalls(), before + 1, 'payments that reached the provider');
  }

  async invalidRequestListsEveryBadField() {
    const before = await this.payCalls();
    const request = paymentRequest('', '0000000000', '0');
    request.amount.currency_code = 'ngn';
    const error = await refused(call(this.payments, 'CreatePayment', request));
    const { BadRequest } = expectError(error, grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST');
    assert(BadRequest, 'no BadRequest');
    const fields = BadRequest.field_violations.map((v) => v.field).sort();
    assertEqual(fields, ['amount.currency_code', 'amount.minor_units', 'request_id'], 'bad fields');
    assert(
      BadRequest.field_violations.every((v) => v.description),
      'every violation is described',
    );
    assertEqual(await this.payCalls(), before, 'payments that reached the provider');
  }

  async camelCaseLoaderDropsSnakeCaseKeys() {
    // proto-loader's default (keepCase: false) renames fields to camelCase, and protobufjs
    // leaves out any key that is not a field: every snake_case key below is dropped unsent.
    const camel = grpc.loadPackageDefinition(
      protoLoader.loadSync(BILLPAY_PROTOS, { ...LOADER_OPTIONS, keepCase: false }),
    ).billpay.v1;
    const payments = new camel.PaymentService(this.plainAddress, grpc.credentials.createInsecure());
    this.clients.push(payments);
    const before = await this.payCalls();
    const error = await refused(call(payments, 'CreatePayment', paymentRequest(newRequestId())));
    const { BadRequest } = expectError(error, grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST');
    const fields = BadRequest.field_violations.map((v) => v.field);
    for (const field of ['request_id', 'product_id', 'customer_id', 'amount.minor_units']) {
      assert(fields.includes(field), () => `${field} not reported missing: ${fields}`);
    }
    assertEqual(await this.payCalls(), before, 'payments that reached the provider');
  }

  async requestInFlightHasRetryInfo() {
    // Sandbox customer 3333333333's payment takes 3 s. With a 1 s deadline the gateway answers
    // PENDING before the deadline and the payment goes on; the same request meanwhile is told
    // to wait (ABORTED, REQUEST_IN_FLIGHT) and when to retry.
    const request = paymentRequest(newRequestId(), '3333333333', '5000');
    const { payment } = await call(this.payments, 'CreatePayment', request, 1000);
    assertEqual(payment.state, 'PAYMENT_STATE_PENDING', 'state before the deadline');
    const error = await refused(call(this.payments, 'CreatePayment', request));
    const { ErrorInfo, RetryInfo } = expectError(error, grpc.status.ABORTED, 'REQUEST_IN_FLIGHT');
    assertEqual(ErrorInfo.metadata.request_id, request.request_id, 'ErrorInfo.metadata.request_id');
    assert(RetryInfo, 'no RetryInfo');
    const { seconds, nanos } = RetryInfo.retry_delay; // google.protobuf.Duration; seconds: int64
    const delayMs = Number(seconds) * 1000 + nanos / 1e6;
    assert(delayMs > 0 && delayMs <= 60_000, `retry_delay ${seconds} s ${nanos} ns`);
  }

  async unknownPaymentIsNotFoundWithResourceInfo() {
    const paymentId = `pay_${randomBytes(16).toString('hex')}`;
    const error = await refused(call(this.payments, 'GetPayment', { payment_id: paymentId }));
    const { ResourceInfo } = expectError(error, grpc.status.NOT_FOUND, 'NOT_FOUND');
    assert(ResourceInfo, () => `no ResourceInfo: ${JSON.stringify(errorDetails(error))}`);
    assertEqual(ResourceInfo.resource_type, 'billpay.v1.Payment', 'ResourceInfo.resource_type');
    assertEqual(ResourceInfo.resource_name, paymentId, 'ResourceInfo.resource_name');
  }

  async unknownProductIsNamedInResourceInfo() {
    const before = await this.payCalls();
    const request = { ...paymentRequest(newRequestId()), product_id: '90999' };
    const error = await refused(call(this.payments, 'CreatePayment', request));
    const { ErrorInfo, ResourceInfo } = expectError(
      error,
      grpc.status.NOT_FOUND,
      'PRODUCT_NOT_FOUND',
    );
    assertEqual(ErrorInfo.metadata.product_id, '90999', 'ErrorInfo.metadata.product_id');
    assert(ResourceInfo, 'no ResourceInfo');
    assertEqual(ResourceInfo.resource_type, 'billpay.v1.Product', 'ResourceInfo.resource_type');
    assertEqual(
      ResourceInfo.resource_name,
      'billers/901/products/90999',
      'ResourceInfo.resource_name',
    );
    assert(/interswitch/i.test(ResourceInfo.owner), `ResourceInfo.owner ${ResourceInfo.owner}`);
    assertEqual(await this.payCalls(), before, 'payments that reached the provider');
  }

  async healthCheckAndWatch() {
    for (const service of ['', 'billpay.v1.PaymentService', 'billpay.v1.CatalogService']) {
      assertEqual(
        (await call(this.health, 'Check', { service })).status,
        'SERVING',
        `Check(${service})`,
      );
    }
    const error = await refused(
      call(this.health, 'Check', { service: 'billpay.v1.NoSuchService' }),
    );
    assertEqual(error.code, grpc.status.NOT_FOUND, 'Check of an unknown service');
    assertEqual(await firstWatched(this.health, 'billpay.v1.PaymentService'), 'SERVING', 'Watch');
  }

  async mtlsClientCertificateGetsThrough() {
    const credentials = this.mtlsCredentials('client');
    const catalog = new billpay.CatalogService(this.mtlsAddress, credentials);
    const payments = new billpay.PaymentService(this.mtlsAddress, credentials);
    this.clients.push(catalog, payments);
    const { billers } = await call(catalog, 'ListBillers', { provider: 'PROVIDER_INTERSWITCH' });
    assertEqual(
      billers.slice(0, 2).map((b) => b.biller_id),
      ['901', '902'],
      'biller ids',
    );
    const { payment } = await call(payments, 'CreatePayment', paymentRequest(newRequestId()));
    assertEqual(payment.state, 'PAYMENT_STATE_SUCCEEDED', 'state');
    // The caller's permissions apply, and ErrorInfo's metadata says who and what.
    const error = await refused(call(catalog, 'ListBillers', { provider: 'PROVIDER_ONEPIPE' }));
    const { ErrorInfo } = expectError(error, grpc.status.PERMISSION_DENIED, 'CALLER_NOT_ALLOWED');
    assertEqual(ErrorInfo.metadata.caller, 'checkout', 'ErrorInfo.metadata.caller');
    const named = Object.values(ErrorInfo.metadata).some((v) => /onepipe/i.test(v));
    assert(named, () => `OnePipe not named in ${JSON.stringify(ErrorInfo.metadata)}`);
  }

  async mtlsWithoutACertificateFromTheCaIsRefused() {
    for (const cert of [null, 'stranger']) {
      // No client certificate; one from another CA.
      const catalog = new billpay.CatalogService(this.mtlsAddress, this.mtlsCredentials(cert));
      this.clients.push(catalog);
      const error = await refused(
        call(catalog, 'ListBillers', { provider: 'PROVIDER_INTERSWITCH' }),
      );
      // Refused at the TLS handshake: no gRPC status from the gateway at all.
      assertEqual(error.code, grpc.status.UNAVAILABLE, `code with certificate ${cert}`);
      assertEqual(errorDetails(error), {}, `details with certificate ${cert}`);
    }
    const certified = new health.Health(this.mtlsAddress, this.mtlsCredentials('client'));
    this.clients.push(certified);
    assert(await this.serving(certified), 'the gateway still serves certified clients');
  }

  close() {
    for (const client of this.clients) client.close();
  }
}

const CHECKS = [
  'payThenReplayPaysOnce',
  'invalidRequestListsEveryBadField',
  'camelCaseLoaderDropsSnakeCaseKeys',
  'requestInFlightHasRetryInfo',
  'unknownPaymentIsNotFoundWithResourceInfo',
  'unknownProductIsNamedInResourceInfo',
  'healthCheckAndWatch',
  'mtlsClientCertificateGetsThrough',
  'mtlsWithoutACertificateFromTheCaIsRefused',
];

async function main() {
  const started = performance.now();
  const seconds = (since) => ((performance.now() - since) / 1000).toFixed(1);
  const workdir = mkdtempSync(path.join(tmpdir(), 'billpay-nodecheck-'));
  const children = [];
  const stopAll = () => Promise.all(children.map((c) => c.stop()));
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.once(signal, () => stopAll().finally(() => process.exit(143)));
  }
  let failed = 0;
  try {
    const [simPort, plainPort, mtlsPort] = [await freePort(), await freePort(), await freePort()];
    const simUrl = `http://127.0.0.1:${simPort}`;
    const config = path.join(workdir, 'mtls.toml');
    writeFileSync(config, MTLS_CONFIG);
    const sim = new Child('simulate', ['simulate', '--listen', `127.0.0.1:${simPort}`], workdir);
    const plain = new Child(
      'serve-plaintext',
      ['serve', '--sandbox', '--sandbox-url', simUrl, '--listen', `127.0.0.1:${plainPort}`],
      workdir,
    );
    const mtls = new Child(
      'serve-mtls',
      ['serve', '--sandbox', '--config', config, '--listen', `127.0.0.1:${mtlsPort}`],
      workdir,
    );
    children.push(sim, plain, mtls);

    // TLS names the server by its DNS name (tests/certs/server.pem: localhost and 127.0.0.1).
    const checks = new Checks(simUrl, `127.0.0.1:${plainPort}`, `localhost:${mtlsPort}`);
    try {
      await waitUntil('answering', sim, async () => (await checks.payCalls()) >= 0);
      await waitUntil('SERVING', plain, () => checks.serving());
      const probe = new health.Health(checks.mtlsAddress, checks.mtlsCredentials('client'));
      await waitUntil('SERVING over mTLS', mtls, () => checks.serving(probe));
      probe.close();
      console.log(`node-client: gateways up in ${seconds(started)} s (${BIN})`);

      for (const name of CHECKS) {
        const t = performance.now();
        try {
          await checks[name]();
          console.log(`ok   ${name} (${seconds(t)} s)`);
        } catch (error) {
          failed += 1;
          console.log(`FAIL ${name}\n${error.stack ?? error}`);
        }
      }
    } finally {
      checks.close();
    }
    if (failed) {
      for (const c of children) console.log(`--- ${c.name} log (last lines) ---\n${c.tail()}`);
    }
  } catch (error) {
    failed = CHECKS.length;
    console.log(`node-client: ${error.stack ?? error}`);
  } finally {
    await stopAll();
    rmSync(workdir, { recursive: true, force: true });
  }
  console.log(
    `node-client: ${CHECKS.length - failed} passed, ${failed} failed in ${seconds(started)} s`,
  );
  return failed ? 1 : 0;
}

process.exitCode = await main();
