// (being written) attention ops.
export {};
