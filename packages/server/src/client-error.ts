// The client's error: the server's `error` event (code, param, expected, found), or a closed connection
// (code E_CLOSED, E_AUTH for close 1008, E_NOT_READY for 1013, with the close code).

export interface ClientErrorInfo {
  code: string;
  param?: string | null;
  expected?: string;
  found?: string;
  requestId?: string | null;
  closeCode?: number;
}

export class ZinferClientError extends Error {
  readonly code: string;
  readonly param: string | null;
  readonly expected: string | undefined;
  readonly found: string | undefined;
  readonly requestId: string | null;
  readonly closeCode: number | undefined;

  constructor(message: string, info: ClientErrorInfo) {
    super(message);
    this.name = 'ZinferClientError';
    this.code = info.code;
    this.param = info.param ?? null;
    this.expected = info.expected;
    this.found = info.found;
    this.requestId = info.requestId ?? null;
    this.closeCode = info.closeCode;
  }
}
