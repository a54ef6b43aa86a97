import { describe, expect, test } from 'vitest'
import { bytes, isZeroTime, parseSize, percent, rate, relative, usedShare } from '../src/format'

describe('format', () => {
  test('bytes in binary units', () => {
    expect(bytes(0)).toBe('0 B')
    expect(bytes(1023)).toBe('1023 B')
    expect(bytes(1024)).toBe('1.00 KiB')
    expect(bytes(10 * 1024 ** 3)).toBe('10.0 GiB')
    expect(bytes(150 * 1024 ** 2)).toBe('150 MiB')
    expect(bytes(null)).toBe('–')
    expect(bytes(-2048)).toBe('-2.00 KiB')
    expect(rate(2048)).toBe('2.00 KiB/s')
    expect(rate(null)).toBe('–')
  })
  test('parseSize reads what bytes writes and what people type', () => {
    expect(parseSize('10GiB')).toBe(10 * 1024 ** 3)
    expect(parseSize('10 GB')).toBe(10 * 1000 ** 3)
    expect(parseSize('1.5 TiB')).toBe(1.5 * 1024 ** 4)
    expect(parseSize('512')).toBe(512)
    expect(parseSize(bytes(10 * 1024 ** 3).replace(' ', ''))).toBe(10 * 1024 ** 3)
    expect(parseSize('ten gigs')).toBeNull()
    expect(parseSize('5 XB')).toBeNull()
  })
  test('share of the limit; no limit is unlimited, not 0 %', () => {
    expect(usedShare(90, 100)).toBeCloseTo(0.9)
    expect(usedShare(90, 0)).toBeNull()
    expect(percent(usedShare(90, 0))).toBe('∞')
    expect(percent(0.456)).toBe('46 %')
  })
  test('the API zero time means never', () => {
    expect(isZeroTime('0001-01-01T00:00:00Z')).toBe(true)
    expect(isZeroTime(undefined)).toBe(true)
    expect(relative('0001-01-01T00:00:00Z', 'en')).toBe('–')
    const now = Date.parse('2026-01-10T00:00:00Z')
    expect(relative('2026-01-13T00:00:00Z', 'en', now)).toBe('in 3 days')
    expect(relative('2026-01-09T23:00:00Z', 'en', now)).toBe('1 hour ago')
    expect(relative('2026-01-13T00:00:00Z', 'zh-CN', now)).toBe('3天后')
  })
})

import { integrate } from '../src/series'

describe('integrate', () => {
  test('rates over time add up to bytes, gaps count nothing', () => {
    // 100 B/s up and 300 B/s down for 60 s, on two series
    const flat = { labels: { node: 'a' }, points: [[0, 100, 300], [60, 100, 300]] }
    expect(integrate([flat, flat] as never)).toBe(2 * 60 * 400)
    // a ramp 0 -> 200 B/s over 10 s is 1000 B; a null sample breaks the sum
    const ramp = { labels: {}, points: [[0, 0, 0], [10, 200, 0], [20, null, 0], [30, 200, 0]] }
    expect(integrate([ramp] as never)).toBe(1000)
    expect(integrate([])).toBe(0)
  })
})
