// Package esc writes strings safely into the three text formats a
// subscription is made of: JSON strings, YAML double-quoted scalars and URI
// components. Every writer appends to a caller's buffer, so rendering a large
// subscription allocates only when that buffer grows.
package esc

import "unicode/utf8"

const hexUpper = "0123456789ABCDEF"
const hexLower = "0123456789abcdef"

// URI percent-encodes s, leaving only ASCII letters, digits and "-._~": the
// encodeURIComponent set minus "!*'()", which some importers mishandle.
func URI(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if Unreserved(c) {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hexUpper[c>>4], hexUpper[c&15])
	}
	return dst
}

// Unreserved reports whether URI leaves c as it is.
func Unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// JSON writes s as a quoted JSON string. Invalid UTF-8 becomes U+FFFD, so the
// output always parses, and '<', '>' and '&' stay as they are: the output is
// a document, never embedded in HTML.
func JSON(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = JSONPart(dst, s)
	return append(dst, '"')
}

// JSONPart writes s escaped as JSON but without quotes, for strings built
// from pieces without concatenating them first.
func JSONPart(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hexLower[c>>4], hexLower[c&15])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return dst
}

// YAML writes s as a double-quoted YAML scalar. Quoting every value that
// comes from outside sidesteps YAML's plain-scalar traps (yes/no, ~, 0x10,
// ": ", "#", leading "-", "&", "*", "!"); inside quotes only '"', '\\' and
// characters YAML reads as line breaks or forbids (C0/C1 controls, DEL,
// U+2028, U+2029, U+FEFF) need escapes.
func YAML(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = YAMLPart(dst, s)
	return append(dst, '"')
}

// YAMLPart writes s escaped for a double-quoted YAML scalar, without quotes.
func YAMLPart(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20 || c == 0x7f:
				dst = append(dst, '\\', 'x', hexUpper[c>>4], hexUpper[c&15])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			dst = append(dst, `\uFFFD`...)
		case r <= 0x9f, r == 0x2028, r == 0x2029, r == 0xfeff, r == 0xfffe, r == 0xffff:
			dst = append(dst, '\\', 'u', hexUpper[r>>12&15], hexUpper[r>>8&15], hexUpper[r>>4&15], hexUpper[r&15])
		default:
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return dst
}
