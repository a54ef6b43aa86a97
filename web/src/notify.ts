// One place for action results, so that nothing fails silently: pages call
// done() and failed(); the shell shows them with the kit's message bar.
import { ApiError } from './api/client'

type Sink = { success(m: string): void; error(m: string): void }
let sink: Sink = { success: () => {}, error: (m) => console.error(m) }

export function setNotifier(s: Sink) {
  sink = s
}

export function done(msg: string) {
  sink.success(msg)
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.field ? `${e.message} (${e.field})` : e.message
  return (e as Error)?.message ?? String(e)
}

export function failed(e: unknown) {
  sink.error(errorText(e))
}

// act runs an API call and reports its result; it returns the answer, or
// undefined after showing the error.
export async function act<T>(f: () => Promise<T>, ok?: string): Promise<T | undefined> {
  try {
    const r = await f()
    if (ok) done(ok)
    return r
  } catch (e) {
    failed(e)
    return undefined
  }
}
