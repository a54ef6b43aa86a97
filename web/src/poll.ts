// Polling that costs nothing in a hidden tab: the timer stops while
// document.hidden and refreshes at once when the tab comes back. A page can
// also pause it (the users page does while rows are selected).
import { onBeforeUnmount, onMounted, ref, type Ref } from 'vue'

export interface Poller {
  stop(): void
  paused: Ref<boolean>
  refresh(): Promise<void>
}

export function startPolling(
  fn: () => Promise<void> | void,
  intervalMs: number,
  doc: Document = document,
  paused: Ref<boolean> = ref(false),
): Poller {
  let timer: ReturnType<typeof setTimeout> | undefined
  let stopped = false
  const tick = async () => {
    timer = undefined
    if (stopped) return
    if (!doc.hidden && !paused.value) {
      try {
        await fn()
      } catch {
        // the page shows its own error state
      }
    }
    if (!stopped && !doc.hidden) timer = setTimeout(tick, intervalMs)
  }
  const onVisibility = () => {
    if (doc.hidden) {
      if (timer) clearTimeout(timer)
      timer = undefined
    } else if (!timer && !stopped) {
      tick()
    }
  }
  doc.addEventListener('visibilitychange', onVisibility)
  timer = setTimeout(tick, intervalMs)
  return {
    paused,
    stop() {
      stopped = true
      if (timer) clearTimeout(timer)
      doc.removeEventListener('visibilitychange', onVisibility)
    },
    async refresh() {
      await fn()
    },
  }
}

// usePolling runs fn now (unless the page loads by itself: immediate
// false) and then every intervalMs while the component lives.
export function usePolling(fn: () => Promise<void> | void, intervalMs = 10000, immediate = true): { paused: Ref<boolean> } {
  const paused = ref(false)
  let p: Poller | undefined
  onMounted(() => {
    if (immediate) fn()
    p = startPolling(fn, intervalMs, document, paused)
  })
  onBeforeUnmount(() => p?.stop())
  return { paused }
}
