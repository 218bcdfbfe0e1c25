// Central finite differences, the independent check of every backward: a gradient g of a
// scalar loss L is right when g·v matches (L(x + h·v) − L(x − h·v)) / 2h, in float64.

/** (g(h) − g(−h)) / 2h. */
function symmetricDifference(g: (t: number) => number, h: number): number {
  return (g(h) - g(-h)) / (2 * h);
}

/**
 * ∂f/∂x[i] by central differences. x is moved in place (f may read it through a closure) and
 * restored before this returns.
 */
export function centralDifference(f: (x: Float64Array) => number, x: Float64Array, i: number, h: number): number {
  const saved = x[i]!;
  return symmetricDifference((t) => {
    x[i] = saved + t;
    const y = f(x);
    x[i] = saved;
    return y;
  }, h);
}

/**
 * The derivative of f at x along v by central differences. x and v are lists of arrays: several
 * inputs move together (f receives the moved copies, in float64; x is left alone).
 */
export function centralDifferenceAlong(f: (x: Float64Array[]) => number, x: ArrayLike<number>[], v: ArrayLike<number>[], h: number): number {
  return symmetricDifference((t) => f(x.map((xi, k) => Float64Array.from(xi, (u, j) => u + t * v[k]![j]!))), h);
}
