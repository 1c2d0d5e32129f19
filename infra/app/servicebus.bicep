// Service Bus: `requests` (tickets from ticketing systems, plain messages) and `reconcile`
// (work for the reconcile loop, sessions keyed by owning application so two workers never
// write to the same Entra app at once). Standard tier is the cheapest tier with sessions.
// Local (SAS) auth is off: senders and receivers need an Entra identity and a data role.
param name string
param location string
param tags object
@description('Principal id of the reconciler\'s managed identity.')
param reconcilerPrincipalId string
@description('Principals (ticketing systems, operators) allowed to send to the requests queue only.')
param ticketSenders array = []

// Built-in role definition GUIDs.
var serviceBusDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var serviceBusDataReceiver = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'

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

// The reconciler receives from both queues and sends to `reconcile` only (ticket hand-off, sweep
// shards, scheduled follow-ups): it never needs to send a ticket, so the only principals that can
// put a message on `requests` are the ticketSenders below. Not Data Owner: it manages no
// entities. (Without the Manage claim the scale controller estimates queue length by peeking.)
resource reconcilerSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(reconcileQueue.id, reconcilerPrincipalId, serviceBusDataSender)
  scope: reconcileQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
    principalId: reconcilerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource reconcilerReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, reconcilerPrincipalId, serviceBusDataReceiver)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiver)
    principalId: reconcilerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Ticketing systems and operators may send tickets, to the `requests` queue only: the only
// Data Sender on that queue (main.bicep's principalId and ticketSenderPrincipalIds).
resource ticketSenderRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for sender in ticketSenders: {
  name: guid(requestsQueue.id, sender.principalId, serviceBusDataSender)
  scope: requestsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
    principalId: sender.principalId
    principalType: sender.principalType
  }
}]

output name string = namespace.name
output id string = namespace.id
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
