// Formatting shared by every page: sizes in binary units (as the CLI
// prints them), rates, relative times, and percentages of a limit.

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–'
  let v = Math.abs(n)
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  const s = i === 0 ? String(Math.round(v)) : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)
  return (n < 0 ? '-' : '') + s + ' ' + units[i]
}

export function rate(n: number | null | undefined): string {
  if (n === null || n === undefined) return '–'
  return bytes(n) + '/s'
}

// usedShare is used/limit in 0..∞, or null when there is no limit.
export function usedShare(used: number, limit: number | undefined | null): number | null {
  if (!limit || limit <= 0) return null
  return used / limit
}

export function percent(share: number | null): string {
  if (share === null) return '∞'
  return `${Math.round(share * 100)} %`
}

// The zero time the API uses for "never".
export function isZeroTime(t: string | null | undefined): boolean {
  return !t || t.startsWith('0001-01-01')
}

// relative says how far t is from now, in the UI's language.
export function relative(t: string | null | undefined, locale: string, now = Date.now()): string {
  if (isZeroTime(t)) return '–'
  const d = (new Date(t as string).getTime() - now) / 1000
  const rtf = new Intl.RelativeTimeFormat(locale, { numeric: 'auto' })
  const a = Math.abs(d)
  if (a < 60) return rtf.format(Math.round(d), 'second')
  if (a < 3600) return rtf.format(Math.round(d / 60), 'minute')
  if (a < 86400) return rtf.format(Math.round(d / 3600), 'hour')
  return rtf.format(Math.round(d / 86400), 'day')
}

export function dateTime(t: string | null | undefined, locale: string): string {
  if (isZeroTime(t)) return '–'
  return new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(t as string))
}

// parseSize reads "10GiB", "500 MB", "1.5 TiB" or a plain byte count.
export function parseSize(s: string): number | null {
  const m = s.trim().match(/^([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]?i?B?)?$/i)
  if (!m) return null
  const n = parseFloat(m[1])
  const u = (m[2] || 'B').toUpperCase().replace('IB', '').replace('B', '')
  const pow = ['', 'K', 'M', 'G', 'T', 'P'].indexOf(u)
  if (pow < 0) return null
  const base = /i/i.test(m[2] || '') || u === '' ? 1024 : 1000
  return Math.round(n * Math.pow(base, pow))
}
