export { Broker, Reader } from "./broker/broker.ts"
export { Store, type StoredMessage } from "./store/store.ts"
export { startServer, ListenError, type RunningServer, type ServerOptions } from "./server/listener.ts"
export { ErrorCode, ProtocolError, type ErrorName } from "./protocol/errors.ts"
