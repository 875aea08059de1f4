// Renders /openapi.json as a page: each route with its parameters, body and answers.
'use strict';

const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
};

function resolve(doc, schema) {
  while (schema && schema.$ref) schema = doc.components.schemas[schema.$ref.split('/').pop()];
  return schema;
}

const pretty = (v) => el('pre', {}, el('code', {}, JSON.stringify(v, null, 2)));

// A content's example: its own, else its schema's (an array's from its items).
function exampleOf(doc, content) {
  if (!content) return undefined;
  if (content.example !== undefined) return content.example;
  let schema = resolve(doc, content.schema);
  if (schema?.type === 'array' && schema.items) {
    const item = resolve(doc, schema.items);
    const one = item?.examples?.[0] ?? item?.example;
    return one === undefined ? undefined : [one];
  }
  return schema?.examples?.[0] ?? schema?.example;
}

function operation(doc, path, method, op) {
  const s = el('section', { id: op.operationId || `${method}-${path}` });
  s.append(el('h2', {}, el('code', {}, `${method.toUpperCase()} ${path}`)), el('p', {}, op.summary || ''));
  if (op.description) s.append(el('p', {}, op.description));
  if (op.parameters?.length) {
    const rows = op.parameters.map((p) => el('tr', {}, el('td', {}, el('code', {}, p.name)), el('td', {}, p.in),
      el('td', {}, p.required ? 'yes' : 'no'), el('td', {}, p.description || '')));
    s.append(el('table', {}, el('caption', {}, 'Parameters'),
      el('thead', {}, el('tr', {}, ...['name', 'in', 'required', 'description'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, ...rows)));
  }
  const body = op.requestBody?.content?.['application/json'];
  if (body) {
    s.append(el('h3', {}, 'Body'));
    const example = exampleOf(doc, body);
    s.append(pretty(example ?? resolve(doc, body.schema)));
  }
  s.append(el('h3', {}, 'Answers'));
  const dl = el('dl');
  for (const [code, r] of Object.entries(op.responses || {})) {
    const res = r.$ref ? doc.components.responses[r.$ref.split('/').pop()] : r;
    dl.append(el('dt', {}, code), el('dd', {}, res.description || ''));
    // Errors share one schema: only an answer's own example is telling.
    const json = res.content?.['application/json'];
    const example = code.startsWith('2') ? exampleOf(doc, json) : json?.example;
    if (example !== undefined) dl.append(el('dd', {}, pretty(example)));
  }
  s.append(dl);
  return s;
}

fetch('/openapi.json').then((r) => r.json()).then((doc) => {
  const main = document.getElementById('docs');
  main.replaceChildren(el('p', {}, doc.info.description || ''));
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (typeof op === 'object' && op.responses) main.append(operation(doc, path, method, op));
    }
  }
}).catch((e) => { document.getElementById('docs').textContent = `cannot load /openapi.json: ${e.message}`; });
