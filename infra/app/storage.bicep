// The Function App's storage account: host state (AzureWebJobsStorage), the Flex deployment
// package, and the reconciler's three tables. Reached only with Entra ID (shared keys off).
param name string
param location string
param tags object
param deploymentContainerName string
@description('Tables the app reads and writes (desired configs, status, ticket requests).')
param tableNames array
@description('Principal id of the reconciler\'s managed identity.')
param reconcilerPrincipalId string
@description('Geo-redundant by default: the desired-state table is the source of truth.')
param skuName string = 'Standard_GRS'

// Built-in role definition GUIDs (fixed in every tenant).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_59: No virtual network in this template (Flex Consumption without VNet integration); every request needs an Entra token because shared keys are off. Add private endpoints for a private deployment.
  //checkov:skip=CKV_AZURE_35: Same reason as CKV_AZURE_59: the Function App reaches storage over the public endpoint with its managed identity; there is no VNet to allow-list.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false // no account keys, no SAS: identities only
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    isLocalUserEnabled: false // no SFTP/local users
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

// Flex Consumption pulls the app package from this container with the app's identity.
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for tableName in tableNames: {
  parent: tableService
  name: tableName
}]

// The Functions host keeps its state in blobs (timer schedule monitor, singleton locks) and
// Flex reads the deployment package: Storage Blob Data Owner, as the Functions docs require
// for an identity-based AzureWebJobsStorage. No queue role: the app uses no storage queues.
resource blobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, reconcilerPrincipalId, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: reconcilerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Desired configs, status and requests: read and write entities, nothing else.
resource tableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, reconcilerPrincipalId, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: reconcilerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output tableEndpoint string = storage.properties.primaryEndpoints.table
