// WIF Reconciler: everything `azd up` provisions. One resource group holds the app and its
// own resources; the reconciler's rights outside it (RBAC on the target scopes, the Graph app
// role) are granted by the modules at the end. No keys anywhere: every connection uses the
// user-assigned managed identity. See docs/deploy.md.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used to name resources and to derive a unique token.')
param environmentName string

@minLength(1)
@description('Region for all resources (must offer Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Name of the resource group; default rg-{environmentName}.')
param resourceGroupName string = ''

@description('Object id of the operator running azd (AZURE_PRINCIPAL_ID, a user or a CI service principal); may send tickets to the requests queue. Empty: none.')
param principalId string = ''

@description('Comma-separated object ids of ticketing-system service principals that may send to the requests queue.')
param ticketSenderPrincipalIds string = ''

@description('Comma-separated subscription ids on which the reconciler may manage role assignments (limited to policy.yaml roles).')
param rbacTargetSubscriptionIds string = ''

@description('Comma-separated "subscriptionId/resourceGroupName" pairs on which the reconciler may manage role assignments (limited to policy.yaml roles).')
param rbacTargetResourceGroups string = ''

@description('Grant Microsoft Graph Application.ReadWrite.OwnedBy to the reconciler (needs an Entra admin deployer, see docs/deploy.md).')
param grantGraphAppRole bool = false

@description('E-mail address for alerts; empty: alerts only show in the portal.')
param alertEmail string = ''

@description('NCRONTAB schedule of the drift sweep (DRIFT_SCHEDULE).')
param driftSchedule string = '0 */30 * * * *'

@description('Drift events (docs/events.md): an Event Grid system topic and subscription on every target subscription, delivering role-assignment writes and deletes to the events queue.')
param driftEvents bool = true

@description('Entra audit logs as drift events: an Event Hub and the tenant\'s Entra diagnostic setting (needs a Global or Security Administrator).')
param entraAuditEvents bool = false

@description('The reconciler\'s identity id in Azure DevOps (connectionData authenticatedUser.id), so that its own changes in the ADO audit stream are ignored.')
param adoReconcilerIdentityId string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-wif-${resourceToken}'
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'

// The reconciler's desired state, status, ticket log and application claims (the app's table names).
var tableNames = [
  'federationconfigs'
  'federationstatus'
  'federationrequests'
  'federationclaims'
  'federationindex'
  'federationhistory'
  'federationpending'
]

// The ABAC condition on the reconciler's role-assignment rights on each target scope: it may
// create or delete a role assignment only when (1) the role is one policy.yaml `roles:` allows,
// (2) the assignee is a service principal, and (3) the assignee is not the reconciler itself.
// So even a compromised reconciler cannot grant Owner, User Access Administrator or any role to a
// user or group, nor give itself (say) Key Vault Secrets User on a whole subscription, nor remove
// other people's assignments of other roles. docs/deploy.md says what it does not prevent.
// Format: Microsoft's "Constrain roles and principal types" and "Constrain roles and specific
// groups" examples (delegate-role-assignments-examples), with the documented PrincipalId operator
// ForAnyOfAllValues:GuidNotEquals; tests/infra/test_rbac_condition.py checks it with those sources.
// The GUIDs, in the order of policy.yaml: Key Vault Reader, Key Vault Secrets User, Reader,
// Storage Blob Data Reader, AcrPull. tests/infra/test_rbac_condition.py checks that both lists
// equal the policy's roles; change the two together. RECONCILER_PRINCIPAL_ID is replaced by the
// identity's object id below (a multi-line string cannot interpolate).
var rbacAdminConditionTemplate = '''
(
 (
  !(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})
 )
 OR
 (
  @Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {21090545-7ca7-4776-b22c-e363652d74d2, 4633458b-17de-408a-b874-0445c86b69e6, acdd72a7-3385-48ef-bd42-f606fba81ae7, 2a2b9908-6ea1-4ae2-8e65-a410df84e7d1, 7f951dda-4ed3-4680-a7ca-43fe172d538d}
  AND
  @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'}
  AND
  @Request[Microsoft.Authorization/roleAssignments:PrincipalId] ForAnyOfAllValues:GuidNotEquals {RECONCILER_PRINCIPAL_ID}
 )
)
AND
(
 (
  !(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})
 )
 OR
 (
  @Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {21090545-7ca7-4776-b22c-e363652d74d2, 4633458b-17de-408a-b874-0445c86b69e6, acdd72a7-3385-48ef-bd42-f606fba81ae7, 2a2b9908-6ea1-4ae2-8e65-a410df84e7d1, 7f951dda-4ed3-4680-a7ca-43fe172d538d}
  AND
  @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'}
  AND
  @Resource[Microsoft.Authorization/roleAssignments:PrincipalId] ForAnyOfAllValues:GuidNotEquals {RECONCILER_PRINCIPAL_ID}
 )
)
'''
var rbacAdminCondition = replace(rbacAdminConditionTemplate, 'RECONCILER_PRINCIPAL_ID', identity.outputs.principalId)

var targetSubscriptionIds = empty(rbacTargetSubscriptionIds) ? [] : split(rbacTargetSubscriptionIds, ',')
var targetResourceGroups = empty(rbacTargetResourceGroups) ? [] : split(rbacTargetResourceGroups, ',')
var ticketSenderIds = [for senderId in (empty(ticketSenderPrincipalIds) ? [] : split(ticketSenderPrincipalIds, ',')): trim(senderId)]
// Drift events come from every subscription the reconciler grants roles in.
var resourceGroupSubscriptionIds = [for target in targetResourceGroups: trim(split(trim(target), '/')[0])]
var trimmedSubscriptionIds = [for subscriptionId in targetSubscriptionIds: trim(subscriptionId)]
var eventSubscriptionIds = union(trimmedSubscriptionIds, resourceGroupSubscriptionIds)

resource rg 'Microsoft.Resources/resourceGroups@2021-04-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-wif-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'stwif${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    tableNames: tableNames
    reconcilerPrincipalId: identity.outputs.principalId
  }
}

module serviceBus 'app/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    name: 'sb-wif-${resourceToken}'
    location: location
    tags: tags
    reconcilerPrincipalId: identity.outputs.principalId
    operatorPrincipalId: principalId
    ticketSenderPrincipalIds: ticketSenderIds
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-wif-${resourceToken}'
    applicationInsightsName: 'appi-wif-${resourceToken}'
    location: location
    tags: tags
    reconcilerPrincipalId: identity.outputs.principalId
    serviceBusNamespaceId: serviceBus.outputs.id
    alertEmail: alertEmail
  }
}

module functionApp 'app/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-wif-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    blobEndpoint: storage.outputs.blobEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: deploymentContainerName
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    driftSchedule: driftSchedule
    reconcilerIdentities: empty(adoReconcilerIdentityId) ? identity.outputs.principalId : '${identity.outputs.principalId},${adoReconcilerIdentityId}'
    entraAuditHub: entraAuditEvents ? entraAudit.outputs.hubName : ''
    entraAuditNamespace: entraAuditEvents ? entraAudit.outputs.fullyQualifiedNamespace : ''
  }
}

// Drift events (docs/events.md): the events queue, and on each target subscription the Event
// Grid system topic and subscription that deliver role-assignment writes and deletes to it.
module eventsQueue 'app/events-queue.bicep' = {
  name: 'events-queue'
  scope: rg
  params: {
    serviceBusNamespaceName: serviceBus.outputs.name
  }
}

module driftEventSources 'app/events-subscription.bicep' = [for subscriptionId in (driftEvents ? eventSubscriptionIds : []): {
  name: 'wif-events-${uniqueString(subscriptionId, environmentName)}'
  scope: subscription(subscriptionId)
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    appSubscriptionId: subscription().subscriptionId
    appResourceGroupName: rg.name
    serviceBusNamespaceName: serviceBus.outputs.name
    eventsQueueId: eventsQueue.outputs.id
  }
}]

module entraAudit 'app/events-entra.bicep' = if (entraAuditEvents) {
  name: 'entra-audit'
  scope: rg
  params: {
    name: 'evhns-wif-${resourceToken}'
    location: location
    tags: tags
    reconcilerPrincipalId: identity.outputs.principalId
  }
}

module entraDiagnostic 'app/events-entra-diagnostic.bicep' = if (entraAuditEvents) {
  name: 'entra-audit-diagnostic-${resourceToken}'
  scope: tenant()
  params: {
    eventHubAuthorizationRuleId: entraAuditEvents ? entraAudit.outputs.authorizationRuleId : ''
    eventHubName: entraAuditEvents ? entraAudit.outputs.hubName : ''
  }
}

// The reconciler's right to manage role assignments, on each target scope: a custom role (role
// assignments read/write/delete, role definitions read) created there and assigned with the ABAC
// condition above. Each module is a nested deployment in that subscription or resource group, so
// the deployer needs there: Microsoft.Resources/deployments/* (to run it), and
// Microsoft.Authorization/roleDefinitions/write and roleAssignments/write (what it creates), that
// is Owner, or User Access Administrator plus a role with Microsoft.Resources/deployments/*.
// Role Based Access Control Administrator is not enough. docs/deploy.md, "First deployment".
module rbacAdminOnSubscriptions 'app/rbac-admin-subscription.bicep' = [for subscriptionId in targetSubscriptionIds: {
  name: 'rbac-admin-${uniqueString(trim(subscriptionId))}'
  scope: subscription(trim(subscriptionId))
  params: {
    reconcilerPrincipalId: identity.outputs.principalId
    condition: rbacAdminCondition
  }
}]

module rbacAdminOnResourceGroups 'app/rbac-admin-resource-group.bicep' = [for target in targetResourceGroups: {
  name: 'rbac-admin-${uniqueString(trim(target))}'
  scope: resourceGroup(split(trim(target), '/')[0], split(trim(target), '/')[1])
  params: {
    reconcilerPrincipalId: identity.outputs.principalId
    condition: rbacAdminCondition
  }
}]

// Optional: Microsoft Graph Application.ReadWrite.OwnedBy for the identity (Entra admin only).
module graphAppRole 'app/graph-app-role.bicep' = if (grantGraphAppRole) {
  name: 'graph-app-role'
  scope: rg
  params: {
    reconcilerPrincipalId: identity.outputs.principalId
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output WIF_API_URL string = 'https://${functionApp.outputs.defaultHostName}/api'
output WIF_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output WIF_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output SERVICE_BUS_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output WIF_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
