// The one way the UI talks to the controller: same-origin fetch with the
// session cookie (never a token in storage), JSON in and out, and the API's
// error envelope turned into an ApiError that pages show as is.
import type { components } from './schema'

export type Schemas = components['schemas']

export class ApiError extends Error {
  status: number
  code: string
  field?: string
  retryAfter?: number // seconds, from a 429's Retry-After
  constructor(status: number, code: string, message: string, field?: string, retryAfter?: number) {
    super(message)
    this.status = status
    this.code = code
    this.field = field
    this.retryAfter = retryAfter
  }
}

// apiRoot is the controller's root as the browser sees it: the UI lives at
// <root>ui/, so the API is one level up from the document's base, whatever
// prefix a proxy added.
export function apiRoot(): string {
  return new URL('../', document.baseURI).pathname
}

// Listeners for 401s, so that the session store can send the user to login.
const unauthorized: Array<() => void> = []
export function onUnauthorized(f: () => void) {
  unauthorized.push(f)
}

export type Query = Record<string, string | number | boolean | undefined | null>

export function withQuery(path: string, q?: Query): string {
  if (!q) return path
  const p = new URLSearchParams()
  for (const [k, v] of Object.entries(q)) {
    if (v === undefined || v === null || v === '') continue
    p.set(k, String(v))
  }
  const s = p.toString()
  return s ? `${path}?${s}` : path
}

export async function request<T>(method: string, path: string, body?: unknown, q?: Query): Promise<T> {
  const url = apiRoot() + withQuery(path.replace(/^\//, ''), q)
  const init: RequestInit = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } }
  if (body !== undefined) {
    init.body = JSON.stringify(body)
    ;(init.headers as Record<string, string>)['Content-Type'] = 'application/json'
  }
  let res: Response
  try {
    res = await fetch(url, init)
  } catch (e) {
    throw new ApiError(0, 'network', `the controller did not answer: ${(e as Error).message}`)
  }
  const text = await res.text()
  let data: unknown = undefined
  if (text) {
    try {
      data = JSON.parse(text)
    } catch {
      data = undefined
    }
  }
  if (!res.ok) {
    const env = (data as Schemas['Error'] | undefined)?.error
    const retry = Number(res.headers.get('Retry-After')) || undefined
    const err = new ApiError(res.status, env?.code ?? 'http', env?.message ?? `${res.status} ${res.statusText}`, env?.field, retry)
    if (res.status === 401 && !path.includes('api/v1/session')) unauthorized.forEach((f) => f())
    throw err
  }
  return data as T
}

export const api = {
  get: <T>(path: string, q?: Query) => request<T>('GET', path, undefined, q),
  post: <T>(path: string, body?: unknown, q?: Query) => request<T>('POST', path, body ?? {}, q),
  put: <T>(path: string, body?: unknown) => request<T>('PUT', path, body ?? {}),
  patch: <T>(path: string, body?: unknown) => request<T>('PATCH', path, body ?? {}),
  del: <T>(path: string, body?: unknown) => request<T>('DELETE', path, body),
}

export const enc = encodeURIComponent
