import type { InputHTMLAttributes } from 'vue'

// ip builds a kit input's native attributes with a data-test hook for the
// browser tests (the attribute types do not list data-* names).
export function ip(test: string, extra: Record<string, string> = {}): InputHTMLAttributes {
  return { ...extra, 'data-test': test } as InputHTMLAttributes
}
