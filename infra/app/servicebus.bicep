// Service Bus: `requests` (tickets from ticketing systems, plain messages) and `reconcile`
// (work for the reconcile loop, sessions keyed by owning application so two workers never
// write to the same Entra app at once). Standard tier is the cheapest tier with sessions.
// Local (SAS) auth is off: senders and receivers need an Entra identity and a data role.
param name string
param location string
param tags object
@description('Principal id of the reconciler\'s managed identity.')
param reconcilerPrincipalId string
@description('Object id of the operator running azd, allowed to send to the requests queue only; empty: none.')
param operatorPrincipalId string = ''
@description('Object ids of ticketing-system service principals allowed to send to the requests queue only.')
param ticketSenderPrincipalIds array = []

// Built-in role definition GUIDs.
var serviceBusDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var serviceBusDataReceiver = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
var serviceBusDataOwner = '090c5cfd-751d-490a-894a-3ce6f1109419'

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true // no SAS keys, no connection strings
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

// Tickets: no sessions, so any ticketing system can send a plain message. A request that
// fails five times (a bug, not a bad ticket: bad tickets are recorded as rejected) is
// dead-lettered for an operator; so is one nobody picked up within its time to live.
resource requestsQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: 'requests'
  properties: {
    requiresSession: false
    maxDeliveryCount: 5
    lockDuration: 'PT5M'
    defaultMessageTimeToLive: 'P14D'
    deadLetteringOnMessageExpiration: true
  }
}

// Reconcile work: sessions on (session id = stable hash of the owning application).
// PT5M is the longest lock Service Bus allows and covers a bulk reconcile of one shard;
// temporary errors are retried by redelivery, up to ten times, then dead-lettered.
resource reconcileQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: 'reconcile'
  properties: {
    requiresSession: true
    maxDeliveryCount: 10
    lockDuration: 'PT5M'
    defaultMessageTimeToLive: 'P7D'
    deadLetteringOnMessageExpiration: true
  }
}

// The reconciler's rights on `reconcile`: it sends there (ticket hand-offs, sweep and event repairs,
// scheduled follow-ups), receives, and reads the queue's runtime properties. That last right is Manage, which
// only Data Owner grants: without it the Service Bus extension's target scaler cannot read the queue
// length and the platform falls back to incremental scaling, adding one instance at a time
// (azure-sdk-for-net ServiceBusMetricsProvider rethrows UnauthorizedAccessException "to fallback to
// incremental scale"; the official Flex Service Bus sample grants Data Owner for the same reason).
// Scoped to this queue only: Manage on `reconcile` cannot reach `requests` (auto-forwarding needs
// Manage on the destination too). docs/deploy.md, "Scaling", has the decision.
resource reconcilerQueueOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(reconcileQueue.id, reconcilerPrincipalId, serviceBusDataOwner)
  scope: reconcileQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataOwner)
    principalId: reconcilerPrincipalId
    principalType: 'ServicePrincipal'
  }
}
// The reconciler sends to no other queue. Drift events reach `events` from Event Grid's system
// topics, whose own identities hold Data Sender on that queue only (events-sender-role.bicep).

// Receiving from `requests` (and every queue the app triggers on). Receiving cannot forge a ticket;
// sending can, so no sending right is granted on the namespace.
resource reconcilerReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, reconcilerPrincipalId, serviceBusDataReceiver)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiver)
    principalId: reconcilerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Ticketing systems and the operator may send tickets, to the `requests` queue only: they are the
// only principals with a sending right there. Its trigger scales incrementally (the reconciler has
// no Manage right on `requests`, which would come with sending): tickets arrive at human pace.
resource ticketSenderRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for senderId in ticketSenderPrincipalIds: {
  name: guid(requestsQueue.id, senderId, serviceBusDataSender)
  scope: requestsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
    principalId: senderId
    principalType: 'ServicePrincipal'
  }
}]

// The operator's type (user, or a service principal when azd runs in CI) is left for ARM to look
// up: principalType is only needed for a principal created moments before (replication delay).
resource operatorSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(requestsQueue.id, operatorPrincipalId, serviceBusDataSender)
  scope: requestsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
    principalId: operatorPrincipalId
  }
}

output name string = namespace.name
output id string = namespace.id
// The host name from the namespace's own endpoint ("https://{name}.servicebus.windows.net:443/" in
// the public cloud), so sovereign clouds get their own suffix.
output fullyQualifiedNamespace string = split(split(namespace.properties.serviceBusEndpoint, '/')[2], ':')[0]
