// Every message key exists in every language, with the same placeholders,
// and no message is left empty: a missing key would show its raw name.
import { describe, expect, test } from 'vitest'
import { readdirSync, readFileSync } from 'node:fs'
import { messages } from '../src/i18n'

type Tree = { [k: string]: string | Tree }
function flat(t: Tree, prefix = ''): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(t)) {
    if (typeof v === 'string') out[prefix + k] = v
    else Object.assign(out, flat(v, prefix + k + '.'))
  }
  return out
}
const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort()

const en = flat(messages.en as Tree)

describe('message files', () => {
  test('one file per language, all loaded', () => {
    const files = readdirSync('src/i18n').filter((f) => f.endsWith('.json')).map((f) => f.replace('.json', '')).sort()
    expect(files).toEqual(Object.keys(messages).sort())
    expect(files).toEqual(['en', 'fa', 'ru', 'zh-CN'])
  })
  for (const [lang, tree] of Object.entries(messages)) {
    test(`${lang} has exactly the English keys and placeholders`, () => {
      const m = flat(tree as Tree)
      expect(Object.keys(m).sort()).toEqual(Object.keys(en).sort())
      for (const [k, v] of Object.entries(m)) {
        expect(v.trim(), `${lang}:${k} is empty`).not.toBe('')
        expect(placeholders(v), `${lang}:${k}`).toEqual(placeholders(en[k]))
      }
    })
  }
  test('every key the code uses is in the English file', () => {
    const src = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
        d.isDirectory() ? src(`${dir}/${d.name}`) : /\.(vue|ts)$/.test(d.name) ? [`${dir}/${d.name}`] : [])
    const missing: string[] = []
    for (const f of src('src')) {
      for (const m of readFileSync(f, 'utf8').matchAll(/\bt\('([a-zA-Z0-9_.]+)'\s*[,)]/g)) {
        if (!(m[1] in en)) missing.push(`${f}: ${m[1]}`)
      }
    }
    expect(missing).toEqual([])
  })
})
