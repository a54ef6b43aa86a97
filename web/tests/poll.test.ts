import { afterEach, describe, expect, test, vi } from 'vitest'
import { ref } from 'vue'
import { startPolling } from '../src/poll'

afterEach(() => {
  vi.useRealTimers()
})

function fakeDoc() {
  const listeners: Array<() => void> = []
  return {
    hidden: false,
    addEventListener: (_: string, f: () => void) => listeners.push(f),
    removeEventListener: () => {},
    fire() {
      listeners.forEach((f) => f())
    },
  }
}

describe('polling', () => {
  test('stops while the tab is hidden and refreshes when it is back', async () => {
    vi.useFakeTimers()
    const doc = fakeDoc()
    let calls = 0
    const p = startPolling(() => { calls++ }, 1000, doc as unknown as Document)
    await vi.advanceTimersByTimeAsync(3100)
    expect(calls).toBe(3)
    doc.hidden = true
    doc.fire()
    await vi.advanceTimersByTimeAsync(10000)
    expect(calls).toBe(3)
    doc.hidden = false
    doc.fire()
    await vi.advanceTimersByTimeAsync(10)
    expect(calls).toBe(4)
    p.stop()
    await vi.advanceTimersByTimeAsync(5000)
    expect(calls).toBe(4)
  })
  test('a paused poller skips its calls (rows selected)', async () => {
    vi.useFakeTimers()
    const paused = ref(true)
    let calls = 0
    const p = startPolling(() => { calls++ }, 1000, fakeDoc() as unknown as Document, paused)
    await vi.advanceTimersByTimeAsync(5000)
    expect(calls).toBe(0)
    paused.value = false
    await vi.advanceTimersByTimeAsync(1000)
    expect(calls).toBe(1)
    p.stop()
  })
})
