// Validates the AsyncAPI document of the WebSocket chat protocol (docs/asyncapi.json, or the file
// given as the first argument) with the AsyncAPI parser, and checks every message's examples
// against its own payload schema with Ajv. Run by infra/asyncapi.sh.
//
// Prints every diagnostic of the parser. Exits 1 on an error-severity diagnostic (severity 0), a
// document that is not AsyncAPI 3.x, a message without a JSON Schema object payload whose "type"
// is a const or without an example, or an example its payload schema rejects.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';

const here = path.dirname(fileURLToPath(import.meta.url));
const file = path.resolve(process.argv[2] ?? path.join(here, '..', '..', 'docs', 'asyncapi.json'));
const shown = path.relative(process.cwd(), file) || file;

const SEVERITY = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
  [DiagnosticSeverity.Information]: 'info',
  [DiagnosticSeverity.Hint]: 'hint',
};

const problems = [];
const fail = (what) => problems.push(what);

// The parser's schemas carry its own `x-parser-*` annotations; Ajv (strict) must not see them.
function withoutParserKeys(value) {
  if (Array.isArray(value)) return value.map(withoutParserKeys);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([k]) => !k.startsWith('x-parser-'))
      .map(([k, v]) => [k, withoutParserKeys(v)]),
  );
}

const text = await readFile(file, 'utf8');
const parser = new Parser();
const { document, diagnostics } = await parser.parse(text, { source: file });

for (const d of diagnostics) {
  const where = d.path && d.path.length ? ` at /${d.path.join('/')}` : '';
  console.log(`${SEVERITY[d.severity] ?? d.severity}: ${d.code}: ${d.message}${where}`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).length;
if (errors > 0) fail(`${errors} error diagnostic(s) from the AsyncAPI parser`);

if (document === undefined) {
  fail('the AsyncAPI parser produced no document');
} else {
  const version = document.version();
  if (!/^3\./.test(version)) fail(`AsyncAPI ${version}, not 3.x`);

  const ajv = new Ajv({ strict: true, allErrors: true, allowUnionTypes: true });
  addFormats(ajv);
  let messages = 0;
  let examples = 0;
  // Every message of the document: under components, channels and operations (each once).
  for (const message of document.allMessages()) {
    messages += 1;
    const id = message.id();
    const payload = message.payload()?.json();
    if (payload === undefined || payload === null || typeof payload !== 'object') {
      fail(`message ${id}: no payload schema`);
      continue;
    }
    if (payload.type !== 'object' || typeof payload.properties?.type?.const !== 'string') {
      fail(`message ${id}: the payload is not an object schema with a string "type" const`);
    }
    if (!Array.isArray(payload.required) || !payload.required.includes('type')) {
      fail(`message ${id}: the payload does not require "type"`);
    }
    let validate;
    try {
      validate = ajv.compile(withoutParserKeys(payload));
    } catch (e) {
      fail(`message ${id}: the payload schema does not compile: ${e.message}`);
      continue;
    }
    const all = message.examples().all();
    if (all.length === 0) fail(`message ${id}: no example`);
    all.forEach((example, i) => {
      examples += 1;
      const name = example.name() ?? `#${i}`;
      if (!example.hasPayload()) {
        fail(`message ${id}, example ${name}: no payload`);
      } else if (!validate(example.payload())) {
        for (const e of validate.errors) {
          fail(`message ${id}, example ${name}: ${e.instancePath || '/'} ${e.message}`);
        }
      }
    });
  }
  if (messages === 0) fail('the document has no messages');
  console.log(`${shown}: AsyncAPI ${version}, ${messages} messages, ${examples} examples checked against their payloads`);
}

if (problems.length > 0) {
  for (const p of problems) console.error(`FAILED: ${p}`);
  process.exit(1);
}
console.log(`${shown}: valid`);
