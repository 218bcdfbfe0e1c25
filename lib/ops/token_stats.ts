// (being written) token_stats ops.
export {};
