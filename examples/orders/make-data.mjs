#!/usr/bin/env node
// Writes the example dataset of lorakit's main job: turning short customer order messages into one
// JSON object (order id, customer, quantity, item, city, delivery date). Deterministic (fixed seed),
// so the committed train.jsonl / eval.jsonl are exactly what this script prints.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let s = 20261128;
const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
const pick = (a) => a[Math.floor(rand() * a.length)];

const first = ['Alice', 'Bruno', 'Chen', 'Dana', 'Emeka', 'Fatima', 'Giulia', 'Hiro', 'Ines', 'Jonas', 'Kemal', 'Lena', 'Mateo', 'Nadia', 'Oskar', 'Priya', 'Quinn', 'Rosa', 'Sven', 'Tariq', 'Uma', 'Viktor', 'Wen', 'Yara', 'Zoe'];
const last = ['Smith', 'Okafor', 'Rossi', 'Tanaka', 'Novak', 'Haddad', 'Schmidt', 'Costa', 'Lindqvist', 'Moreau', 'Kowalski', 'Patel', 'Garcia', 'Ivanova', 'Byrne', 'Nakamura'];
const items = ['blue mug', 'desk lamp', 'notebook', 'wool scarf', 'phone case', 'water bottle', 'yoga mat', 'tea kettle', 'backpack', 'umbrella', 'chess set', 'picture frame', 'pair of headphones', 'coffee grinder', 'plant pot'];
const cities = ['Leeds', 'Porto', 'Lyon', 'Gdansk', 'Osaka', 'Austin', 'Cork', 'Turin', 'Bergen', 'Nairobi', 'Quebec', 'Seville', 'Utrecht', 'Hobart'];
const months = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const numberWords = ['one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten'];

const templates = [
  (o) => `Order #${o.id} from ${o.customer}: ${o.qtyText} ${o.itemText}, ship to ${o.city} by ${o.date}.`,
  (o) => `Hi, this is ${o.customer}. Please send ${o.qtyText} ${o.itemText} to ${o.city}. I need them by ${o.date}. My order number is ${o.id}.`,
  (o) => `${o.customer} (order ${o.id}) wants ${o.qtyText} ${o.itemText} delivered in ${o.city} no later than ${o.date}.`,
  (o) => `Could you deliver ${o.qtyText} ${o.itemText} to ${o.city} before ${o.date}? Ref ${o.id}. Thanks, ${o.customer}`,
  (o) => `New order ${o.id}: customer ${o.customer}; item ${o.itemText}; quantity ${o.qtyText}; destination ${o.city}; deadline ${o.date}.`,
  (o) => `URGENT - ${o.customer} needs ${o.qtyText} ${o.itemText} in ${o.city} by ${o.date} (order no. ${o.id})`,
];

const SYSTEM = 'Extract the order as JSON with keys order_id, customer, quantity, item, city, date. Reply with the JSON only.';

function example() {
  const quantity = 1 + Math.floor(rand() * 10);
  const item = pick(items);
  const o = {
    id: 1000 + Math.floor(rand() * 9000),
    customer: `${pick(first)} ${pick(last)}`,
    quantity,
    item,
    qtyText: rand() < 0.5 ? String(quantity) : numberWords[quantity - 1],
    itemText: quantity === 1 ? item : item.startsWith('pair of') ? item.replace('pair of', 'pairs of') : `${item}s`,
    city: pick(cities),
    date: `${1 + Math.floor(rand() * 28)} ${pick(months)}`,
  };
  const answer = { order_id: o.id, customer: o.customer, quantity: o.quantity, item: o.item, city: o.city, date: o.date };
  return {
    messages: [
      { role: 'system', content: SYSTEM },
      { role: 'user', content: pick(templates)(o) },
      { role: 'assistant', content: JSON.stringify(answer) },
    ],
  };
}

const here = dirname(fileURLToPath(import.meta.url));
const write = (name, n) => writeFileSync(join(here, name), Array.from({ length: n }, () => JSON.stringify(example())).join('\n') + '\n');
write('train.jsonl', 240);
write('eval.jsonl', 40);
