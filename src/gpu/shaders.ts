/**
 * Loads WGSL kernel families from shaders/ and fills in their template parameters.
 *
 * A template parameter is written `{{NAME}}` in the .wgsl file; only values that must be compile-time
 * constants (tile sizes, workgroup sizes, fused epilogues) are templated. Shapes travel in uniforms.
 */
import { readFileSync } from 'node:fs';

const sources = new Map<string, string>();

function shaderUrl(family: string): URL {
  return new URL(`../../shaders/${family}.wgsl`, import.meta.url);
}

/** Raw text of shaders/<family>.wgsl (cached). */
export function shaderSource(family: string): string {
  let text = sources.get(family);
  if (text === undefined) {
    text = readFileSync(shaderUrl(family), 'utf8');
    sources.set(family, text);
  }
  return text;
}

export type Defines = Readonly<Record<string, string | number>>;

/** shaders/<family>.wgsl with every `{{NAME}}` replaced; throws if a placeholder is left unfilled. */
export function renderShader(family: string, defines: Defines = {}): string {
  const text = shaderSource(family).replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    const value = defines[name];
    if (value === undefined) throw new Error(`shaders/${family}.wgsl needs template parameter ${name}`);
    return String(value);
  });
  return text;
}
